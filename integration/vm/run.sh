#!/usr/bin/env bash
# The kernel matrix: boot Debian's 6.1 and 6.12 kernels under qemu (software
# emulation) and prove every probe there with the same host-built `tapio`.
#
# Two boots per kernel:
#   smoke  a busybox initramfs holding `tapio` (guest-init.sh): `tapio probes`
#          and one `tapio run` with every probe on against real work (exec,
#          connect, DNS, XDP/tc on a veth pair, BPF LSM rules, insmod, su),
#          checked in the OTLP-JSON output;
#   suite  the host's root filesystem shared read-only over 9p (suite-init.sh):
#          the privileged integration test binaries that `cargo test` built
#          run inside the guest against its kernel, one pass/FAIL line per test.
#
#   bash integration/vm/run.sh                 # smoke + suite, all pinned kernels
#   MODE=smoke bash integration/vm/run.sh      # or MODE=suite
#   KERNELS=6.12.115+deb12-amd64 bash integration/vm/run.sh
#   SUITE="lsm security" bash integration/vm/run.sh   # which test binaries
#   WRITE_README=1 bash integration/vm/run.sh  # also rewrite README's matrix
#   BENCH=1 bash integration/vm/run.sh         # guest benchmarks instead
#   MODE=suite SUITE= SUITE_EXTRA='dbg 60 tapio probes' bash integration/vm/run.sh
#                                              # any command in the suite guest
#
# Kernels are pinned (Debian moves them); the .debs are downloaded once into
# $CACHE and unpacked there, the host's /boot is never touched. The generic
# (not -cloud) flavour: it has 9p, which the suite boot needs.
set -euo pipefail
cd "$(dirname "$0")/../.."
CACHE=${CACHE:-$HOME/.cache/tapio/vm}
TAPIO=${TAPIO:-${CARGO_TARGET_DIR:-target}/release/tapio}
MODE=${MODE:-smoke suite}
[ -n "${BENCH:-}" ] && MODE=smoke
declare -A PKG=(
	[6.1.0-56-amd64]=linux-image-6.1.0-56-amd64-unsigned
	[6.12.115+deb12-amd64]=linux-image-6.12.115+deb12-amd64-unsigned
)
KERNELS=${KERNELS:-"6.1.0-56-amd64 6.12.115+deb12-amd64"}
# The test binaries the suite boot runs (integration/tests/<name>.rs), each
# proving the probe of the same name, with the tests skipped in the guests
# after a colon. cli, e2e, export_resilience and abi_btf test the export
# path, config and ABI, which do not depend on the kernel: host only. So do
# the process tests that vary only the exporter (HTTP/gzip, mTLS, OTEL_*
# variables, rotel, --collector-config) and the ConfigMap symlink swap
# (inotify, not BPF): under emulation they cost ~2 minutes per kernel and
# prove nothing about it.
SUITE=${SUITE-"process:process_events_over_http_with_gzip_and_headers,otel_environment_variables_configure_the_exporter,process_events_through_the_rotel_collector,process_events_over_grpc_with_mutual_tls,collector_config_supplies_the_endpoint network dns security lsm:configmap_style_symlink_swap_is_applied xdp tc"}
# Per test binary, under emulation (CPU-bound code runs ~12x slower).
SUITE_TIMEOUT=${SUITE_TIMEOUT:-900}
[ -x "$TAPIO" ] || { echo "build first: cargo build --release ($TAPIO missing)"; exit 1; }
command -v qemu-system-x86_64 >/dev/null || { echo "needs qemu-system-x86, busybox-static, kmod"; exit 1; }
mkdir -p "$CACHE"
# Keep the files of the last few runs only.
{ ls -dt "$CACHE"/run.* 2>/dev/null || true; } | tail -n +6 | xargs -r rm -rf

kernel_image() { # version -> path of vmlinuz, downloading and unpacking once
	local v=$1 img="$CACHE/root/boot/vmlinuz-$1"
	if [ ! -f "$img" ]; then
		(cd "$CACHE" && apt-get download "${PKG[$v]}" >/dev/null 2>&1 && dpkg-deb -x "${PKG[$v]}"_*.deb root)
	fi
	[ -f "$CACHE/root/lib/modules/$v/modules.dep" ] || depmod -b "$CACHE/root" "$v"
	echo "$img"
}

# Per-run files, so concurrent runs (a developer and CI) never share them.
RUN=$(mktemp -d "$CACHE/run.XXXXXX")
trap 'rm -f "$RUN"/initrd-*.gz' EXIT

# modules DEST NAME... : each module with its dependencies, uncompressed,
# numbered in load order, under DEST/<kernel>/ for every kernel.
copy_modules() {
	local dest=$1 v p i
	shift
	for v in $KERNELS; do
		mkdir -p "$dest/$v"
		i=0
		for p in $(for m in "$@"; do modprobe -d "$CACHE/root" -S "$v" --show-depends "$m"; done |
			awk '$1 == "insmod" && !seen[$2]++ { print $2 }'); do
			i=$((i + 1))
			local out
			out="$dest/$v/$(printf %02d $i)_$(basename "${p%.xz}")"
			case $p in
			*.xz) xz -dc "$p" >"$out" ;;
			*.zst) zstd -qdc "$p" >"$out" ;;
			*) cp "$p" "$out" ;;
			esac
		done
	done
}

pack() { # dir out: a newc cpio, gzipped
	(cd "$1" && find . | cpio -o -H newc 2>/dev/null | gzip -1) >"$2"
	rm -rf "$1"
}

build_smoke_initrd() { # -> path of initrd
	local dir out=$RUN/initrd-smoke.gz
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
	# veth and the clsact qdisc are modules, and busybox has no modprobe to
	# load them on demand: bring each kernel's own. crc7 (dependency-free,
	# from the same package) is what the guests load for the security
	# probe's module-load check.
	local v name mod
	for v in $KERNELS; do
		mkdir -p "$dir/lib/modules/$v"
		for name in veth sch_ingress cls_bpf crc7; do
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
	pack "$dir" "$out"
	echo "$out"
}

build_suite_initrd() { # -> path of initrd (the kernel picks its own modules)
	local dir out=$RUN/initrd-suite.gz
	dir=$(mktemp -d)
	mkdir -p "$dir"/{bin,proc,sys,dev,host}
	cp /bin/busybox "$dir/bin/busybox"
	# virtio-pci is built in on 6.12 and a module on 6.1.
	copy_modules "$dir/mods" virtio_pci 9pnet_virtio 9p
	# The chroot's modprobe finds the guest's modules under this root.
	echo "$CACHE/root" >"$dir/modules-root"
	cp integration/vm/suite-init.sh "$dir/init"
	chmod +x "$dir/init"
	pack "$dir" "$out"
	echo "$out"
}

boot() { # kernel initrd console-log [qemu args...]
	local v=$1 initrd=$2 log=$3
	shift 3
	timeout "${BOOT_TIMEOUT:-600}" qemu-system-x86_64 -accel tcg,thread=multi -cpu max -m 3072 -smp 2 \
		-nographic -no-reboot -nic none -kernel "$CACHE/root/boot/vmlinuz-$v" -initrd "$initrd" \
		-append "console=ttyS0 panic=-1 quiet lsm=lockdown,capability,landlock,bpf $APPEND" "$@" >"$log" 2>&1 || true
}

# Test binaries as cargo built them (the suite runs what the host tested).
test_binaries() { # -> "name path" lines
	cargo test --release -p tapio --no-run --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and "test" in m["target"]["kind"]:
        print(m["target"]["name"], m["executable"])'
}

suite_names() { for e in $SUITE; do echo "${e%%:*}"; done; }

# Which smoke checks prove which probe (for the matrix table).
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
declare -A VARIANT SMOKE TESTS
fail=0

run_smoke() { # kernel
	local v=$1 log clean start took chosen check ok p variant
	log="$RUN/console-smoke-$v.log"
	start=$(date +%s)
	APPEND="tapio_mode=${BENCH:+bench}" boot "$v" "$SMOKE_INITRD" "$log"
	took=$(($(date +%s) - start))
	echo "== kernel $v, smoke (${took}s under emulation; console: $log)"
	# Once, to a file: `tr | grep -q` under pipefail fails at random when
	# grep exits early and tr gets SIGPIPE.
	clean="$RUN/console-smoke-$v.txt"
	tr -d '\r' <"$log" >"$clean"
	if [ -n "${BENCH:-}" ]; then
		grep -o 'BENCH.*' "$clean" || { echo "  no benchmark output"; fail=1; }
		return
	fi
	sed -n '/=== probes begin/,/=== probes end/p' "$clean" | grep -E '^  (process|network|dns|xdp|security|lsm|tc) ' || true
	chosen=$(awk 'match($0, /tapio ready probes=[^ ]*/) { print substr($0, RSTART + 19, RLENGTH - 19); exit }' "$clean")
	echo "  attached: ${chosen:-none}"
	local checks="tapio ready" all mine
	for p in $PROBES; do checks="$checks|${PROVES[$p]}"; done
	IFS='|' read -ra all <<<"$checks"
	for check in "${all[@]}"; do
		if grep -q "^CHECK $check" "$clean"; then
			echo "  pass  $v smoke: $check"
		else
			echo "  FAIL  $v smoke: $check"
			fail=1
		fi
	done
	for p in $PROBES; do
		variant=$(echo "$chosen" | tr ',' '\n' | sed -n "s/^$p=//p")
		ok=0
		IFS='|' read -ra mine <<<"${PROVES[$p]}"
		for check in "${mine[@]}"; do
			grep -q "^CHECK $check" "$clean" && ok=$((ok + 1))
		done
		VARIANT[$p,$v]=${variant:-not attached}
		SMOKE[$p,$v]="$ok/${#mine[@]}"
	done
}

run_suite() { # kernel
	local v=$1 out log start took name bin rc secs t
	out="$RUN/suite-$v"
	mkdir -p "$out"
	printf '%s\n' "PATH=$PATH" HOME=/root CI=true \
		RUST_BACKTRACE=1 TAPIO_GUEST_KERNEL="$v" | tr '\n' ' ' >"$out/env"
	: >"$out/tests"
	local entry skips
	for entry in $SUITE; do
		name=${entry%%:*}
		skips=""
		[ "$name" = "$entry" ] || skips=$(echo "${entry#*:}" | tr ',' '\n' | sed 's/^/--skip /' | tr '\n' ' ')
		bin=${BIN_OF[$name]:-}
		[ -n "$bin" ] || { echo "  FAIL  $v suite: no test binary $name"; fail=1; continue; }
		echo "$name $SUITE_TIMEOUT $bin --test-threads=1 $skips" >>"$out/tests"
	done
	# Debugging: more lines of "name timeout shell-command" to run in the
	# guest; their output lands in the results directory.
	[ -z "${SUITE_EXTRA:-}" ] || echo "$SUITE_EXTRA" >>"$out/tests"
	log="$RUN/console-suite-$v.log"
	start=$(date +%s)
	BOOT_TIMEOUT=$((SUITE_TIMEOUT * ($(wc -l <"$out/tests") + 1) + 120)) APPEND="" boot "$v" "$SUITE_INITRD" "$log" \
		-virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
		-virtfs "local,path=$out,mount_tag=out,security_model=none"
	took=$(($(date +%s) - start))
	echo "== kernel $v, suite (${took}s under emulation; results: $out)"
	[ -f "$out/boot.txt" ] || { echo "  FAIL  $v suite: the guest did not start (console: $log)"; fail=1; return; }
	for name in $(suite_names); do
		[ -n "${BIN_OF[$name]:-}" ] || continue
		rc=$(cat "$out/$name.rc" 2>/dev/null || echo none)
		secs=$(cat "$out/$name.secs" 2>/dev/null || echo "?")
		local passed=0 total=0 took
		# Lines are "<uptime> <output>"; with one test thread, a test ran
		# from the previous result line (or "running N tests") to its own.
		while read -r took t res; do
			total=$((total + 1))
			if [ "$res" = ok ]; then
				passed=$((passed + 1))
				echo "  pass  $v $name::$t (${took}s)"
			else
				echo "  FAIL  $v $name::$t ($res after ${took}s)"
				fail=1
			fi
		done < <(awk '
			$2 == "running" && $4 ~ /^tests?$/ { last = $1 }
			$2 == "test" && $(NF - 1) == "..." && $NF ~ /^(ok|FAILED|ignored)$/ {
				printf "%d %s %s\n", $1 - last, $3, $NF; last = $1
			}' "$out/$name.txt" 2>/dev/null)
		if [ "$rc" != 0 ] && [ $passed = $total ]; then
			# Killed by the timeout, or failed outside a test.
			echo "  FAIL  $v $name (exit $rc after ${secs}s; output: $out/$name.txt)"
			fail=1
		fi
		echo "  -- $name: $passed/$total in ${secs}s"
		TESTS[$name,$v]="$passed/$total"
	done
}

for v in $KERNELS; do kernel_image "$v" >/dev/null; done
case " $MODE " in *" smoke "*) SMOKE_INITRD=$(build_smoke_initrd) ;; esac
declare -A BIN_OF
case " $MODE " in *" suite "*)
	SUITE_INITRD=$(build_suite_initrd)
	while read -r name bin; do BIN_OF[$name]=$bin; done < <(test_binaries)
	;;
esac
run_kernel() { # kernel: its boots, report on stdout, results in $RUN/state-<kernel>
	local v=$1 k
	case " $MODE " in *" smoke "*) run_smoke "$v" ;; esac
	case " $MODE " in *" suite "*) run_suite "$v" ;; esac
	{
		for k in "${!VARIANT[@]}"; do printf 'VARIANT[%q]=%q\n' "$k" "${VARIANT[$k]}"; done
		for k in "${!SMOKE[@]}"; do printf 'SMOKE[%q]=%q\n' "$k" "${SMOKE[$k]}"; done
		for k in "${!TESTS[@]}"; do printf 'TESTS[%q]=%q\n' "$k" "${TESTS[$k]}"; done
		echo "[ $fail = 0 ] || fail=1"
	} >"$RUN/state-$v"
}
if [ -n "${BENCH:-}" ] || [ "${PARALLEL:-1}" = 0 ]; then
	# Benchmarks never share the CPUs with another guest.
	for v in $KERNELS; do run_kernel "$v"; done
	[ -n "${BENCH:-}" ] && exit $fail
else
	# The kernels' guests run side by side: the tests mostly wait (for
	# exports, timers, peers), so two guests take little more wall time
	# than one.
	for v in $KERNELS; do run_kernel "$v" >"$RUN/report-$v.txt" 2>&1 & done
	wait
	for v in $KERNELS; do cat "$RUN/report-$v.txt"; done
fi
for v in $KERNELS; do
	# shellcheck disable=SC1090
	[ -f "$RUN/state-$v" ] && . "$RUN/state-$v" || fail=1
done

# The README's matrix, from this run: the attach variant each probe chose in
# the smoke boot, its smoke checks, and its test binary's tests in the
# suite boot. The host column comes from HOST_TESTS, a log of the host's
# `cargo test` (the Makefile passes it), and the host's `tapio probes`.
host_variant() { # probe -> the best variant `tapio probes` loaded here
	awk -v p="$1" '
		$1 == "tc" && $2 == "tcx" { tcx = ($3 == "yes") }
		$1 != p || $3 != "yes" { next }
		p == "lsm" { if ($2 ~ /^(connect|bind|socket_create|device)$/) cg = 1; else if ($2 ~ /^(file_open|exec|ptrace|module_load|bpf)$/) bl = 1; next }
		p == "xdp" { x = 1; next }
		!best { best = $2 }
		END {
			if (p == "lsm") best = (cg ? "cgroup" : "") (bl ? (cg ? "+" : "") "bpf_lsm" : "")
			if (p == "xdp" && x) best = "xdp+" (tcx ? "tcx" : "clsact")
			print (best ? best : "none")
		}' "$RUN/host-probes.txt"
}
host_tests() { # test binary -> passed/total from the host log
	[ -f "${HOST_TESTS:-}" ] || { echo "not run"; return; }
	awk -v n="$1" '
		/Running .*\/deps\// { cur = $0; sub(/.*\/deps\//, "", cur); sub(/-[0-9a-f]+\)?$/, "", cur) }
		/^test result:/ && cur == n { p += $4; f += $6; cur = "" }
		END { printf "%d/%d", p, p + f }' "$HOST_TESTS"
}
"$TAPIO" probes >"$RUN/host-probes.txt" 2>&1 || true
table="$RUN/matrix.md"
{
	echo "| probe | $(uname -r) (this machine) |$(for v in $KERNELS; do printf ' Debian %s (qemu) |' "$v"; done)"
	echo "|---|---|$(for _ in $KERNELS; do printf -- '---|'; done)"
	for p in $PROBES; do
		printf '| %s | %s, tests %s |' "$p" "$(host_variant "$p")" "$(host_tests "$p")"
		for v in $KERNELS; do printf ' %s, smoke %s, tests %s |' "${VARIANT[$p,$v]:-not run}" "${SMOKE[$p,$v]:-not run}" "${TESTS[$p,$v]:-not run}"; done
		echo
	done
} >"$table"
echo
cat "$table"
if [ -n "${WRITE_README:-}" ] && [ $fail = 0 ]; then
	python3 - "$table" <<'PY'
import re, sys
table = open(sys.argv[1]).read()
text = open("README.md").read()
new, n = re.subn(r"(<!-- kernel-matrix:begin -->\n).*?(<!-- kernel-matrix:end -->)",
                 lambda m: m.group(1) + table + m.group(2), text, flags=re.S)
if n != 1:
    sys.exit("README.md has no kernel-matrix markers")
open("README.md", "w").write(new)
print("README.md: kernel matrix rewritten")
PY
fi
exit $fail
