#!/usr/bin/env bash
# DNS-heavy workload, side by side in one run: N getaddrinfo() lookups from a
# test namespace to dnsmasq in another (198.18.0.0/15 only), measured
#   alone | with tapio exporting OTLP/gRPC to a counting receiver on
#   loopback | with tapio printing OTLP-JSON on stdout |
#   with libbpf-tools gethostlatency (uprobes on libc's resolver)
# Tapio runs the dns probe only (spans + histogram), like gethostlatency
# runs its one tool. Prints median wall time, slowdown ratios, tracer CPU,
# kernel ns per program run, and how many lookups each tool reported.
# Asserts nothing.
#
# Tracer CPU is read from a cpuacct cgroup (v1 cpuacct.usage or v2
# cpu.stat, nanoseconds, every thread including exited ones) the tracer is
# moved into; without one it falls back to /proc/PID/stat (10 ms ticks).
#
#   cargo build --release -p tapio -p tapio-integration   # otlp_count
#   N=5000 RUNS=5 bash bench/dns_overhead.sh
set -euo pipefail
N=${N:-5000}
RUNS=${RUNS:-5}
TAPIO=${TAPIO:-${CARGO_TARGET_DIR:-target}/release/tapio}
COUNT=${COUNT:-$(dirname "$TAPIO")/otlp_count}
GHL=/usr/sbin/gethostlatency
for b in "$TAPIO" "$COUNT"; do
	[ -x "$b" ] || { echo "build first: cargo build --release -p tapio -p tapio-integration ($b missing)"; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "needs root"; exit 1; }
work=$(mktemp -d)
A=tapio-bench-dns-a
B=tapio-bench-dns-b
CG=""
cleanup() {
	kill $(jobs -p) 2>/dev/null || true
	[ -n "$CG" ] && rmdir "$CG" 2>/dev/null || true
	ip netns del $A 2>/dev/null || true
	ip netns del $B 2>/dev/null || true
	rm -rf "/etc/netns/$A" "$work"
	sysctl -qw kernel.bpf_stats_enabled=0 || true
}
trap cleanup EXIT
TICK=$(getconf CLK_TCK)
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

# A cgroup that only the tracer under measurement is in.
if [ -d /sys/fs/cgroup/cpuacct ]; then
	CG=/sys/fs/cgroup/cpuacct/tapio-bench-dns-$$
	mkdir "$CG"
	cg_ns() { cat "$CG/cpuacct.usage"; }
elif [ -f /sys/fs/cgroup/cgroup.controllers ]; then
	CG=/sys/fs/cgroup/tapio-bench-dns-$$
	mkdir "$CG"
	cg_ns() { awk '$1 == "usage_usec" {print $2 * 1000}' "$CG/cpu.stat"; }
fi
# CPU ns of process $1 (moved into the cgroup by `measure $1`).
measure() { [ -n "$CG" ] && echo "$1" >"$CG/cgroup.procs"; }
cpu_ns() { if [ -n "$CG" ]; then cg_ns; else echo $(($(cpu_ticks "$1") * 1000000000 / TICK)); fi; }
# Move measured processes back out so the next one starts from zero.
unmeasure() {
	[ -n "$CG" ] || return 0
	local root
	root=$(dirname "$CG")
	while read -r p; do echo "$p" >"$root/cgroup.procs" 2>/dev/null || true; done <"$CG/cgroup.procs"
}

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_port() {
	for _ in $(seq 1 200); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	echo "port $1 did not open" >&2
	return 1
}

for ns in $A $B; do ip netns del $ns 2>/dev/null || true; ip netns add $ns; ip -n $ns link set lo up; done
ip -n $A link add tbda type veth peer name tbdb netns $B
ip -n $A addr add 198.18.0.1/24 dev tbda
ip -n $B addr add 198.18.0.2/24 dev tbdb
ip -n $A link set tbda up
ip -n $B link set tbdb up
# `ip netns exec` bind-mounts /etc/netns/<ns>/resolv.conf: libc in A asks dnsmasq.
mkdir -p "/etc/netns/$A"
echo "nameserver 198.18.0.2" >"/etc/netns/$A/resolv.conf"
ip netns exec $B dnsmasq --no-daemon --no-resolv --no-hosts --bind-interfaces --listen-address=198.18.0.2 \
	--local=/tapio.test/ --host-record=www.tapio.test,198.18.0.10 --user=root --pid-file= >/dev/null 2>&1 &
sleep 1

cat >"$work/load.py" <<'PY'
import socket, sys, time
n = int(sys.argv[1])
t0 = time.perf_counter_ns()
for _ in range(n):
    socket.getaddrinfo("www.tapio.test", 80, socket.AF_INET, socket.SOCK_STREAM)
print(time.perf_counter_ns() - t0)
PY
workload() { ip netns exec $A python3 "$work/load.py" "$N"; }
workload >/dev/null # warm up caches and ARP

sysctl -qw kernel.bpf_stats_enabled=1
RX=$(free_port)
CTL=$(free_port)
"$COUNT" --grpc "127.0.0.1:$RX" --control "127.0.0.1:$CTL" >/dev/null 2>"$work/count.err" &
wait_port "$CTL"
received() {
	curl -s --max-time 5 "http://127.0.0.1:$CTL/counts" | python3 -c '
import json,sys
d=json.load(sys.stdin)
print(sum(v for k,v in d["records"].items() if k.startswith("traces dns.query")))'
}

# run_tapio SINK_YAML OUT: one measured workload under Tapio (dns probe
# only); sets $wall, $cpu (ns), $teg, $trx.
run_tapio() {
	cat >"$work/tapio.yaml" <<Y
probes:
  process: { enabled: false }
  network: { enabled: false }
  kernel: { enabled: false }
  security: { enabled: false }
  lsm: { enabled: false }
  xdp: { enabled: false }
  tc: { enabled: false }
  dns: { enabled: true }
exporters: { $1 }
pipeline: { traces: { schedule_delay: 200ms } }
Y
	"$TAPIO" run --config "$work/tapio.yaml" >"$2" 2>"$work/tapio.err" &
	local tp=$!
	wait_for "$work/tapio.err" "tapio ready"
	measure $tp
	local c0 c1
	c0=$(cpu_ns $tp)
	wall=$(workload)
	sleep 1
	c1=$(cpu_ns $tp)
	read -r teg _ < <(prog_ns tapio_dns_egres)
	read -r trx _ < <(prog_ns tapio_dns_recei)
	kill -INT $tp
	wait $tp || true
	unmeasure
	cpu=$((c1 - c0))
}

declare -a base tap tap_cpu tap_n tapj tapj_cpu tapj_n ghl ghl_cpu ghl_n
for r in $(seq 1 "$RUNS"); do
	base+=("$(workload)")

	n0=$(received)
	run_tapio "otlp: { endpoint: \"http://127.0.0.1:$RX\" }" "$work/tapio.out"
	tap+=("$wall")
	tap_cpu+=("$cpu")
	tap_n+=("$(($(received) - n0))")

	run_tapio "stdout: {}" "$work/tapio.json"
	tapj+=("$wall")
	tapj_cpu+=("$cpu")
	tapj_n+=("$(grep -o '"name":"dns.query"' "$work/tapio.json" | wc -l)")

	$GHL >"$work/ghl.txt" 2>&1 &
	gp=$!
	sleep 2
	measure $gp
	d0=$(cpu_ns $gp)
	ghl+=("$(workload)")
	sleep 1
	d1=$(cpu_ns $gp)
	read -r gns _ < <(prog_ns handle_return)
	kill -INT $gp; wait $gp 2>/dev/null || true
	unmeasure
	ghl_cpu+=("$((d1 - d0))")
	ghl_n+=("$(grep -c "www.tapio.test" "$work/ghl.txt" || true)")
	echo "run $r: alone $((base[-1] / 1000000)) ms, tapio otlp $((tap[-1] / 1000000)) ms (${tap_n[-1]} spans, $((tap_cpu[-1] / 1000000)) ms CPU), tapio json $((tapj[-1] / 1000000)) ms (${tapj_n[-1]} spans, $((tapj_cpu[-1] / 1000000)) ms CPU), gethostlatency $((ghl[-1] / 1000000)) ms (${ghl_n[-1]} lines, $((ghl_cpu[-1] / 1000000)) ms CPU)"
done
med() { printf '%s\n' "$@" | median; }
python3 - "$N" "$(med "${base[@]}")" \
	"$(med "${tap[@]}")" "$(med "${tap_cpu[@]}")" "$(med "${tap_n[@]}")" \
	"$(med "${tapj[@]}")" "$(med "${tapj_cpu[@]}")" "$(med "${tapj_n[@]}")" \
	"$(med "${ghl[@]}")" "$(med "${ghl_cpu[@]}")" "$(med "${ghl_n[@]}")" \
	"$teg" "$trx" "$gns" "${CG:+cgroup cpuacct (ns)}" <<'PY'
import sys
n,b,t,tc,tn,j,jc,jn,g,gc,gn=map(int,sys.argv[1:12]); teg,trx,gns,src=sys.argv[12:16]
print(f"\nDNS workload: {n} x getaddrinfo(AF_INET) to dnsmasq across a veth, median of runs; CPU from {src or '/proc/PID/stat (10 ms ticks)'}")
print("| setup | wall (ms) | slowdown vs alone | tracer CPU (ms) | lookups reported | CPU ms per 1,000 reported | kernel ns per program run |")
print("|---|---|---|---|---|---|---|")
print(f"| alone | {b/1e6:.0f} | 1.00 | - | - | - | - |")
def row(label, w, c, k, extra):
    print(f"| {label} | {w/1e6:.0f} | {w/b:.3f} | {c/1e6:.1f} | {k} | {c/1e6/max(k/1000,1e-9):.2f} | {extra} |")
row("tapio dns probe, OTLP/gRPC to a receiver on loopback", t, tc, tn, f"egress {teg}, receive {trx}")
row("tapio dns probe, OTLP-JSON on stdout", j, jc, jn, "(same programs)")
row("gethostlatency (libc uprobes), text lines to a file", g, gc, gn, gns)
PY
