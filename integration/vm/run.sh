#!/usr/bin/env bash
# Boot Debian's 6.1 and 6.12 cloud kernels under qemu (software emulation)
# with a busybox initramfs holding the host-built `tapio`, run `tapio probes`
# and a short `tapio run` with a real exec, connect and DNS lookup in each
# guest, and print a pass/fail line per kernel and check.
#
#   bash integration/vm/run.sh            # all pinned kernels
#   KERNELS=6.12.115+deb12-cloud-amd64 bash integration/vm/run.sh
#
# Kernels are pinned (Debian moves them); the .debs are downloaded once into
# $CACHE and unpacked there, the host's /boot is never touched.
set -euo pipefail
cd "$(dirname "$0")/../.."
CACHE=${CACHE:-$HOME/.cache/tapio/vm}
TAPIO=${TAPIO:-${CARGO_TARGET_DIR:-target}/release/tapio}
declare -A PKG=(
	[6.1.0-56-cloud-amd64]=linux-image-6.1.0-56-cloud-amd64-unsigned
	[6.12.115+deb12-cloud-amd64]=linux-image-6.12.115+deb12-cloud-amd64-unsigned
)
KERNELS=${KERNELS:-"6.1.0-56-cloud-amd64 6.12.115+deb12-cloud-amd64"}
[ -x "$TAPIO" ] || { echo "build first: cargo build --release ($TAPIO missing)"; exit 1; }
command -v qemu-system-x86_64 >/dev/null || { echo "needs qemu-system-x86 and busybox-static"; exit 1; }
mkdir -p "$CACHE"

kernel_image() { # version -> path of vmlinuz, downloading once
	local v=$1 img="$CACHE/root/boot/vmlinuz-$1"
	if [ ! -f "$img" ]; then
		(cd "$CACHE" && apt-get download "${PKG[$v]}" >/dev/null 2>&1 && dpkg-deb -x "${PKG[$v]}"_*.deb root)
	fi
	echo "$img"
}

build_initrd() { # -> path of initrd
	local dir out=$CACHE/initrd.gz
	dir=$(mktemp -d)
	mkdir -p "$dir"/{bin,proc,sys,dev,tmp,etc,run}
	cp /bin/busybox "$dir/bin/busybox"
	strip -o "$dir/tapio" "$TAPIO"
	# The guest's DNS server (busybox has no dnsd here).
	cp /usr/sbin/dnsmasq "$dir/bin/dnsmasq"
	# Both binaries are dynamic: bring their libraries along.
	for lib in $(ldd "$TAPIO" /usr/sbin/dnsmasq | awk '/=>/ && $3 ~ /^\// {print $3} /^\t\// {print $1}' | sort -u); do
		mkdir -p "$dir$(dirname "$lib")"
		cp -L "$lib" "$dir$lib"
	done
	cp integration/vm/guest-init.sh "$dir/init"
	chmod +x "$dir/init"
	echo 'root:x:0:0:root:/:/bin/sh' >"$dir/etc/passwd"
	echo 'root:x:0:' >"$dir/etc/group"
	(cd "$dir" && find . | cpio -o -H newc 2>/dev/null | gzip -1) >"$out"
	rm -rf "$dir"
	echo "$out"
}

initrd=$(build_initrd)
fail=0
for v in $KERNELS; do
	img=$(kernel_image "$v")
	log="$CACHE/console-$v.log"
	start=$(date +%s)
	timeout 600 qemu-system-x86_64 -accel tcg,thread=multi -cpu max -m 1024 -smp 2 -nographic -no-reboot \
		-kernel "$img" -initrd "$initrd" \
		-append "console=ttyS0 panic=-1 quiet lsm=lockdown,capability,landlock,bpf" >"$log" 2>&1 || true
	took=$(($(date +%s) - start))
	echo "== kernel $v (${took}s under emulation; console: $log)"
	tr -d '\r' <"$log" | sed -n '/=== probes begin/,/=== probes end/p' | grep -E '^  (process|network|dns) ' || true
	chosen=$(tr -d '\r' <"$log" | grep -o 'tapio ready probes=[^ ]*' | head -1 | cut -d= -f2-)
	echo "  attached: ${chosen:-none}"
	for check in "tapio ready" "eventName process.exec" "eventName process.exit" "span tcp.connect" "span dns.query"; do
		if tr -d '\r' <"$log" | grep -q "^CHECK $check"; then
			echo "  pass  $check"
		else
			echo "  FAIL  $check"
			fail=1
		fi
	done
done
exit $fail
