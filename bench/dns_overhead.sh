#!/usr/bin/env bash
# DNS-heavy workload, side by side in one run: N getaddrinfo() lookups from a
# test namespace to dnsmasq in another (198.18.0.0/15 only), measured
#   alone | with tapio (dns probe: spans + histogram) |
#   with libbpf-tools gethostlatency (uprobes on libc's resolver)
# Prints median wall time, slowdown ratios, tracer CPU, kernel ns per
# program run, and how many lookups each tool reported. Asserts nothing.
#
#   N=5000 RUNS=5 bash bench/dns_overhead.sh
set -euo pipefail
N=${N:-5000}
RUNS=${RUNS:-5}
TAPIO=${TAPIO:-${CARGO_TARGET_DIR:-target}/release/tapio}
GHL=/usr/sbin/gethostlatency
[ -x "$TAPIO" ] || { echo "build first: cargo build --release ($TAPIO missing)"; exit 1; }
[ "$(id -u)" = 0 ] || { echo "needs root"; exit 1; }
work=$(mktemp -d)
A=tapio-bench-dns-a
B=tapio-bench-dns-b
cleanup() {
	kill $(jobs -p) 2>/dev/null || true
	ip netns del $A 2>/dev/null || true
	ip netns del $B 2>/dev/null || true
	rm -rf "/etc/netns/$A" "$work"
	sysctl -qw kernel.bpf_stats_enabled=0 || true
}
trap cleanup EXIT
TICK=$(getconf CLK_TCK)
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

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
declare -a base tap ghl tap_cpu ghl_cpu tap_n ghl_n
for r in $(seq 1 "$RUNS"); do
	base+=("$(workload)")

	cat >"$work/tapio.yaml" <<Y
probes: { process: { enabled: false }, network: { enabled: false } }
exporters: { stdout: {} }
pipeline: { traces: { schedule_delay: 200ms } }
Y
	"$TAPIO" run --config "$work/tapio.yaml" >"$work/tapio.json" 2>"$work/tapio.err" &
	tp=$!
	wait_for "$work/tapio.err" "tapio ready"
	c0=$(cpu_ticks $tp)
	tap+=("$(workload)")
	sleep 1
	c1=$(cpu_ticks $tp)
	read -r teg _ < <(prog_ns tapio_dns_egres)
	read -r trx _ < <(prog_ns tapio_dns_recei)
	kill -INT $tp; wait $tp || true
	tap_cpu+=("$(((c1 - c0) * 1000000 / TICK))")
	tap_n+=("$(grep -o '"name":"dns.query"' "$work/tapio.json" | wc -l)")

	$GHL >"$work/ghl.txt" 2>&1 &
	gp=$!
	sleep 2
	d0=$(cpu_ticks $gp)
	ghl+=("$(workload)")
	sleep 1
	d1=$(cpu_ticks $gp)
	read -r gns _ < <(prog_ns handle_return)
	kill -INT $gp; wait $gp 2>/dev/null || true
	ghl_cpu+=("$(((d1 - d0) * 1000000 / TICK))")
	ghl_n+=("$(grep -c "www.tapio.test" "$work/ghl.txt" || true)")
	echo "run $r: alone $((base[-1] / 1000000)) ms, tapio $((tap[-1] / 1000000)) ms (${tap_n[-1]} spans), gethostlatency $((ghl[-1] / 1000000)) ms (${ghl_n[-1]} lines)"
done
B_=$(printf '%s\n' "${base[@]}" | median); T=$(printf '%s\n' "${tap[@]}" | median); G=$(printf '%s\n' "${ghl[@]}" | median)
TC=$(printf '%s\n' "${tap_cpu[@]}" | median); GC=$(printf '%s\n' "${ghl_cpu[@]}" | median)
TN=$(printf '%s\n' "${tap_n[@]}" | median); GN=$(printf '%s\n' "${ghl_n[@]}" | median)
python3 - "$N" "$B_" "$T" "$G" "$TC" "$GC" "$TN" "$GN" "$teg" "$trx" "$gns" <<'PY'
import sys
n,b,t,g,tc,gc,tn,gn=map(int,sys.argv[1:9]); teg,trx,gns=sys.argv[9:12]
print(f"\nDNS workload: {n} x getaddrinfo(AF_INET) to dnsmasq across a veth, median of runs")
print("| setup | wall (ms) | slowdown vs alone | tracer CPU (ms) | lookups reported | CPU ms per 1,000 reported | kernel ns per program run |")
print("|---|---|---|---|---|---|---|")
print(f"| alone | {b/1e6:.0f} | 1.00 | - | - | - | - |")
print(f"| tapio dns probe (spans + histogram) | {t/1e6:.0f} | {t/b:.3f} | {tc/1e3:.0f} | {tn} | {tc/1e3/max(tn/1000,1e-9):.2f} | egress {teg}, receive {trx} |")
print(f"| gethostlatency (libc uprobes) | {g/1e6:.0f} | {g/b:.3f} | {gc/1e3:.0f} | {gn} | {gc/1e3/max(gn/1000,1e-9):.2f} | {gns} |")
PY
