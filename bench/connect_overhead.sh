#!/usr/bin/env bash
# Connect-heavy workload, side by side in one run:
#   alone | with tapio (network probe: spans, close logs, histogram; the
#   dns probe on too, to price its per-packet hooks on non-DNS traffic) |
#   with a bpftrace script on the same tracepoint doing the same job
#   (SYN_SENT -> ESTABLISHED latency per socket into a histogram).
# Prints median wall time, slowdown ratios, tracer CPU, and kernel ns per
# program run (bpf_stats). Also: Tapio's loss at this rate
# (tapio.events.lost from its final metrics). Asserts nothing.
#
#   N=20000 RUNS=5 bash bench/connect_overhead.sh
set -euo pipefail
N=${N:-20000}
RUNS=${RUNS:-5}
TAPIO=${TAPIO:-${CARGO_TARGET_DIR:-target}/release/tapio}
[ -x "$TAPIO" ] || { echo "build first: cargo build --release ($TAPIO missing)"; exit 1; }
[ "$(id -u)" = 0 ] || { echo "needs root"; exit 1; }
command -v bpftrace >/dev/null || { echo "needs bpftrace (apt-get install bpftrace)"; exit 1; }
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; sysctl -qw kernel.bpf_stats_enabled=0 || true; rm -rf "$work"' EXIT
TICK=$(getconf CLK_TCK)
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

cat >"$work/load.py" <<'PY'
import socket, sys, time
n = int(sys.argv[1])
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", 0)); l.listen(1024)
addr = l.getsockname()
t0 = time.perf_counter_ns()
for _ in range(n):
    c = socket.create_connection(addr)
    s, _ = l.accept()
    c.close(); s.close()
print(time.perf_counter_ns() - t0)
PY

cat >"$work/connlat.bt" <<'BT'
tracepoint:sock:inet_sock_set_state
/args->protocol == 6 && args->newstate == 2/
{ @start[args->skaddr] = nsecs; }
tracepoint:sock:inet_sock_set_state
/args->protocol == 6 && args->oldstate == 2 && @start[args->skaddr]/
{ @lat = hist(nsecs - @start[args->skaddr]); delete(@start[args->skaddr]); }
BT

workload() { python3 "$work/load.py" "$N"; }

sysctl -qw kernel.bpf_stats_enabled=1
declare -a base tap bt tap_cpu bt_cpu
for r in $(seq 1 "$RUNS"); do
	base+=("$(workload)")

	cat >"$work/tapio.yaml" <<Y
probes: { process: { enabled: false }, dns: { enabled: true } }
exporters: { stdout: {} }
pipeline: { metrics: { export_interval: 1s } }
Y
	"$TAPIO" run --config "$work/tapio.yaml" >"$work/tapio.json" 2>"$work/tapio.err" &
	tp=$!
	wait_for "$work/tapio.err" "tapio ready"
	c0=$(cpu_ticks $tp)
	tap+=("$(workload)")
	sleep 1.5
	c1=$(cpu_ticks $tp)
	read -r tns _ < <(prog_ns tapio_tcp)
	# The dns probe's packet hooks run for every packet, DNS or not.
	read -r dns_eg dns_egc < <(prog_ns tapio_dns_egres)
	read -r dns_rx dns_rxc < <(prog_ns tapio_dns_recei)
	kill -INT $tp; wait $tp || true
	tap_cpu+=("$(((c1 - c0) * 1000000 / TICK))")
	counts=$(python3 -c '
import json,sys
last={}
for l in open(sys.argv[1]):
    d=json.loads(l)
    for rm in d.get("resourceMetrics",[]):
        for sm in rm["scopeMetrics"]:
            for m in sm["metrics"]:
                if m["name"] in ("tapio.events.lost","tapio.events.received"):
                    for p in m["sum"]["dataPoints"]:
                        a={x["key"]:x["value"]["stringValue"] for x in p["attributes"]}
                        if a.get("tapio.probe")=="network":
                            k=m["name"]+"/"+a.get("tapio.reason","")
                            last[k]=int(p["asInt"])
lost=sum(v for k,v in last.items() if k.startswith("tapio.events.lost"))
print(last.get("tapio.events.received/",0), lost)' "$work/tapio.json")

	bpftrace "$work/connlat.bt" >"$work/bt.out" 2>&1 &
	bp=$!
	sleep 3
	d0=$(cpu_ticks $bp)
	bt+=("$(workload)")
	sleep 1
	d1=$(cpu_ticks $bp)
	read -r bns _ < <(prog_ns "inet_sock_set_s")
	kill -INT $bp; wait $bp 2>/dev/null || true
	bt_cpu+=("$(((d1 - d0) * 1000000 / TICK))")
	echo "run $r: alone $((base[-1] / 1000000)) ms, tapio $((tap[-1] / 1000000)) ms (records received, lost: $counts), bpftrace $((bt[-1] / 1000000)) ms"
done
B=$(printf '%s\n' "${base[@]}" | median); T=$(printf '%s\n' "${tap[@]}" | median); E=$(printf '%s\n' "${bt[@]}" | median)
TC=$(printf '%s\n' "${tap_cpu[@]}" | median); EC=$(printf '%s\n' "${bt_cpu[@]}" | median)
python3 - "$N" "$B" "$T" "$E" "$TC" "$EC" "$tns" "$bns" "$dns_eg" "$dns_rx" <<'PY'
import sys
n,b,t,e,tc,ec=map(int,sys.argv[1:7]); tns,bns,deg,drx=sys.argv[7:11]
print(f"\nconnect workload: {n} x (connect, accept, close) on 127.0.0.1, median of runs")
print("| setup | wall (ms) | slowdown vs alone | tracer CPU (ms) | kernel ns per program run |")
print("|---|---|---|---|---|")
print(f"| alone | {b/1e6:.0f} | 1.00 | - | - |")
print(f"| tapio network probe (spans + close logs + histogram) | {t/1e6:.0f} | {t/b:.3f} | {tc/1e3:.0f} | {tns} |")
print(f"| bpftrace, same tracepoint, latency histogram only | {e/1e6:.0f} | {e/b:.3f} | {ec/1e3:.0f} | {bns} |")
print(f"\ndns probe packet hooks on this (non-DNS) traffic: net_dev_queue {deg} ns/packet, netif_receive_skb {drx} ns/packet")
PY
