#!/usr/bin/env bash
# Boot Debian's 6.1 and 6.12 cloud kernels under qemu (software emulation)
# with a busybox initramfs holding the host-built `tapio`, run `tapio probes`
# and a short `tapio run` with a real exec, connect, DNS lookup and an XDP
# block list on a veth pair (one end in a guest network namespace) in each
# guest, and print a pass/fail line per kernel and check.
#
#   bash integration/vm/run.sh            # all pinned kernels
#   KERNELS=6.12.115+deb12-cloud-amd64 bash integration/vm/run.sh
#   BENCH=1 bash integration/vm/run.sh   # connect benchmark vs libbpf-tools
#                                        # tcpconnlat, inside the guests
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
# Keep the consoles of the last few runs only.
{ ls -dt "$CACHE"/run.* 2>/dev/null || true; } | tail -n +6 | xargs -r rm -rf

kernel_image() { # version -> path of vmlinuz, downloading once
	local v=$1 img="$CACHE/root/boot/vmlinuz-$1"
	if [ ! -f "$img" ]; then
		(cd "$CACHE" && apt-get download "${PKG[$v]}" >/dev/null 2>&1 && dpkg-deb -x "${PKG[$v]}"_*.deb root)
	fi
	echo "$img"
}

# Per-run files, so concurrent runs (a developer and CI) never share them.
RUN=$(mktemp -d "$CACHE/run.XXXXXX")
trap 'rm -f "$RUN/initrd.gz"' EXIT

build_initrd() { # -> path of initrd
	local dir out=$RUN/initrd.gz
	dir=$(mktemp -d)
	mkdir -p "$dir"/{bin,proc,sys,dev,tmp,etc,run}
	cp /bin/busybox "$dir/bin/busybox"
	strip -o "$dir/tapio" "$TAPIO"
	# The guest's DNS server (busybox has no dnsd here), and the benchmark's
	# baseline (fentry/kprobes, which this host's kernel refuses).
	cp /usr/sbin/dnsmasq "$dir/bin/dnsmasq"
	extra=/usr/sbin/dnsmasq
	if [ -x /usr/sbin/tcpconnlat ]; then
		cp /usr/sbin/tcpconnlat "$dir/bin/tcpconnlat"
		extra="$extra /usr/sbin/tcpconnlat"
	fi
	# The binaries are dynamic: bring their libraries along.
	for lib in $(ldd "$TAPIO" $extra | awk '/=>/ && $3 ~ /^\// {print $3} /^\t\// {print $1}' | sort -u); do
		mkdir -p "$dir$(dirname "$lib")"
		cp -L "$lib" "$dir$lib"
	done
	# The cloud kernels build veth and the clsact qdisc as modules, and the
	# guest has no modprobe to load them on demand: bring each kernel's own.
	# crc7 (dependency-free, from the same package) is what the guests load
	# for the security probe's module-load check.
	for v in $KERNELS; do
		mkdir -p "$dir/lib/modules/$v"
		for name in veth sch_ingress cls_bpf crc7; do
			local mod
			mod=$(find "$CACHE/root/lib/modules/$v" -name "$name.ko*" | head -1)
			case $mod in
			*.xz) xz -dc "$mod" >"$dir/lib/modules/$v/$name.ko" ;;
			*.zst) zstd -qdc "$mod" >"$dir/lib/modules/$v/$name.ko" ;;
			*) cp "$mod" "$dir/lib/modules/$v/$name.ko" ;;
			esac
		done
	done
	# busybox has no tracer: a static PTRACE_ATTACH caller for the ptrace rule.
	clang-19 -static -O2 -Wall -Werror -o "$dir/bin/ptrace_attach" integration/vm/ptrace_attach.c
	# ...and a static open() loop for the BPF LSM benchmark (BENCH=1).
	clang-19 -static -O2 -Wall -Werror -o "$dir/bin/openloop" integration/vm/openloop.c
	cp integration/vm/guest-init.sh "$dir/init"
	chmod +x "$dir/init"
	printf 'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/true\n' >"$dir/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$dir/etc/group"
	(cd "$dir" && find . | cpio -o -H newc 2>/dev/null | gzip -1) >"$out"
	rm -rf "$dir"
	echo "$out"
}

for v in $KERNELS; do kernel_image "$v" >/dev/null; done
initrd=$(build_initrd)
# Which checks prove which probe (for the matrix table).
declare -A PROVES=(
	[process]="eventName process.exec|eventName process.exit"
	[network]="span tcp.connect"
	[dns]="span dns.query"
	[xdp]="veth reachable before the filter|xdp blocked ping|metric tapio.xdp.packets blocklist"
	[security]="eventName security.module.load crc7|eventName security.credentials.change|credentials su setuid|credentials unshare gained capabilities|credentials via commit_creds|capability use CAP_CHOWN|eventName security.module.request fs-tapiofs|kprobe security attached|kprobe credentials su setuid|kprobe credentials unshare gained capabilities|kprobe credentials via commit_creds|kprobe capability use CAP_CHOWN"
	[tc]="metric tapio.tc.packets dns"
	[lsm]="lsm module_load denied|lsm file_open denied|lsm other file opens|lsm exec denied|lsm connect denied|lsm ptrace denied|lsm ptrace of another allowed|decision no-secret|decision no-exec-denied|decision no-modules|decision no-port-9|decision no-ptrace|lsm file_modify write allowed by operations|lsm file_modify truncate denied|lsm file_modify unlink denied|lsm file_modify rename denied|lsm file_modify rename onto denied|lsm file_modify chmod denied|lsm file_modify chown denied|lsm file_modify file intact|lsm file_modify audited chmod allowed|lsm file_modify other file removable|lsm file_modify inode write denied|lsm file_modify inode read allowed|decision guard-dir|decision audit-chmod|decision no-write-inode|decision guard-dir truncate|decision guard-dir unlink|decision guard-dir rename|decision guard-dir chmod|decision guard-dir chown|lsm module request audited|decision audit-module-request|lsm container_id denied in a container made later|lsm container_id others allowed|decision no-ct-open"
)
PROBES="process network dns xdp tc security lsm"
declare -A CELL
fail=0
for v in $KERNELS; do
	img=$(kernel_image "$v")
	log="$RUN/console-$v.log"
	start=$(date +%s)
	timeout 600 qemu-system-x86_64 -accel tcg,thread=multi -cpu max -m 1024 -smp 2 -nographic -no-reboot \
		-kernel "$img" -initrd "$initrd" \
		-append "console=ttyS0 panic=-1 quiet lsm=lockdown,capability,landlock,bpf tapio_mode=${BENCH:+bench}" >"$log" 2>&1 || true
	took=$(($(date +%s) - start))
	echo "== kernel $v (${took}s under emulation; console: $log)"
	# Once, to a file: `tr | grep -q` under pipefail fails at random when
	# grep exits early and tr gets SIGPIPE.
	clean="$RUN/console-$v.txt"
	tr -d '\r' <"$log" >"$clean"
	if [ -n "${BENCH:-}" ]; then
		grep -o 'BENCH.*' "$clean" || { echo "  no benchmark output"; fail=1; }
		continue
	fi
	sed -n '/=== probes begin/,/=== probes end/p' "$clean" | grep -E '^  (process|network|dns|xdp|security|lsm|tc) ' || true
	chosen=$(awk 'match($0, /tapio ready probes=[^ ]*/) { print substr($0, RSTART + 19, RLENGTH - 19); exit }' "$clean")
	echo "  attached: ${chosen:-none}"
	checks="tapio ready"
	for p in $PROBES; do checks="$checks|${PROVES[$p]}"; done
	IFS='|' read -ra all <<<"$checks"
	for check in "${all[@]}"; do
		if grep -q "^CHECK $check" "$clean"; then
			echo "  pass  $check"
		else
			echo "  FAIL  $check"
			fail=1
		fi
	done
	for p in $PROBES; do
		variant=$(echo "$chosen" | tr ',' '\n' | sed -n "s/^$p=//p")
		ok="✔"
		IFS='|' read -ra mine <<<"${PROVES[$p]}"
		for check in "${mine[@]}"; do
			grep -q "^CHECK $check" "$clean" || ok="✘"
		done
		CELL[$p,$v]="${variant:-not attached} $ok"
	done
done
if [ -z "${BENCH:-}" ]; then
	# The README's matrix rows for the guests, generated from this run.
	echo
	echo "| probe |$(for v in $KERNELS; do printf ' Debian %s (qemu) |' "$v"; done)"
	echo "|---|$(for _ in $KERNELS; do printf -- '---|'; done)"
	for p in $PROBES; do
		echo "| $p |$(for v in $KERNELS; do printf ' %s |' "${CELL[$p,$v]}"; done)"
	done
fi
exit $fail
