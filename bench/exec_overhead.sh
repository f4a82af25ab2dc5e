#!/usr/bin/env bash
# Exec-heavy workload, side by side in one run:
#   alone | with tapio (all process events, OTLP-JSON to a file) |
#   with libbpf-tools execsnoop + exitsnoop (exec and exit lines to a file)
# Prints the median wall time of each, the slowdown ratios, each tracer's
# CPU-seconds per 1,000 events, and kernel ns per program run (bpf_stats).
# A benchmark, not a test: it asserts nothing.
#
#   N=5000 RUNS=5 bash bench/exec_overhead.sh
set -euo pipefail
N=${N:-5000}
RUNS=${RUNS:-5}
TAPIO=${TAPIO:-${CARGO_TARGET_DIR:-target}/release/tapio}
ES=/usr/sbin/execsnoop
XS=/usr/sbin/exitsnoop
[ -x "$TAPIO" ] || { echo "build first: cargo build --release ($TAPIO missing)"; exit 1; }
[ "$(id -u)" = 0 ] || { echo "needs root"; exit 1; }
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; sysctl -qw kernel.bpf_stats_enabled=0 || true; rm -rf "$work"' EXIT
TICK=$(getconf CLK_TCK)
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

workload() { # prints wall ns
	local t0 t1
	t0=$(date +%s%N)
	for ((i = 0; i < N; i++)); do /bin/true; done
	t1=$(date +%s%N)
	echo $((t1 - t0))
}




# kernel ns/run of every loaded program whose name starts with $1

sysctl -qw kernel.bpf_stats_enabled=1
declare -a base tap es tap_cpu es_cpu tap_ev es_ev
for r in $(seq 1 "$RUNS"); do
	base+=("$(workload)")

	TAPIO_LOG=info "$TAPIO" run >"$work/tapio.json" 2>"$work/tapio.err" &
	tp=$!
	wait_for "$work/tapio.err" "tapio ready"
	c0=$(cpu_ticks $tp)
	tap+=("$(workload)")
	sleep 1.5 # let the last batch out
	c1=$(cpu_ticks $tp)
	read -r tns tcnt < <(prog_ns tapio_)
	kill -INT $tp; wait $tp || true
	events=$(python3 -c '
import json,sys
n=0
for l in open(sys.argv[1]):
    d=json.loads(l)
    for rl in d.get("resourceLogs",[]):
        for sl in rl["scopeLogs"]: n+=len(sl["logRecords"])
print(n)' "$work/tapio.json")
	tap_ev+=("$events")
	tap_cpu+=("$(((c1 - c0) * 1000000 / TICK))") # µs

	$ES >"$work/es.txt" 2>&1 &
	e1=$!
	$XS >"$work/xs.txt" 2>&1 &
	e2=$!
	sleep 1.5
	d0=$(($(cpu_ticks $e1) + $(cpu_ticks $e2)))
	es+=("$(workload)")
	sleep 1.5
	d1=$(($(cpu_ticks $e1) + $(cpu_ticks $e2)))
	read -r ens ecnt < <(prog_ns "tracepoint__sys")
	read -r xns xcnt < <(prog_ns "sched_process_e")
	kill -INT $e1 $e2; wait $e1 $e2 2>/dev/null || true
	es_ev+=("$(($(wc -l <"$work/es.txt") + $(wc -l <"$work/xs.txt") - 2))")
	es_cpu+=("$(((d1 - d0) * 1000000 / TICK))")
	echo "run $r: alone $((base[-1] / 1000000)) ms, tapio $((tap[-1] / 1000000)) ms (${tap_ev[-1]} records), execsnoop+exitsnoop $((es[-1] / 1000000)) ms (${es_ev[-1]} lines)"
done

B=$(printf '%s\n' "${base[@]}" | median)
T=$(printf '%s\n' "${tap[@]}" | median)
E=$(printf '%s\n' "${es[@]}" | median)
TC=$(printf '%s\n' "${tap_cpu[@]}" | median)
EC=$(printf '%s\n' "${es_cpu[@]}" | median)
TE=$(printf '%s\n' "${tap_ev[@]}" | median)
EE=$(printf '%s\n' "${es_ev[@]}" | median)
python3 - "$N" "$B" "$T" "$E" "$TC" "$EC" "$TE" "$EE" "$tns" "$ens" "$xns" <<'PY'
import sys
n,b,t,e,tc,ec,te,ee=map(int,sys.argv[1:9]); tns,ens,xns=sys.argv[9:12]
print()
print(f"exec workload: {n} x /bin/true, median of runs")
print(f"| setup | wall (ms) | slowdown vs alone | tracer CPU (ms) | events | CPU ms per 1,000 events | kernel ns/run |")
print(f"|---|---|---|---|---|---|---|")
print(f"| alone | {b/1e6:.0f} | 1.00 | - | - | - | - |")
print(f"| tapio (exec+exit+fork, OTLP-JSON) | {t/1e6:.0f} | {t/b:.3f} | {tc/1e3:.0f} | {te} | {tc/1e3/(te/1000):.2f} | {tns} |")
print(f"| execsnoop + exitsnoop (text) | {e/1e6:.0f} | {e/b:.3f} | {ec/1e3:.0f} | {ee} | {ec/1e3/max(ee/1000,1e-9):.2f} | exec {ens}, exit {xns} |")
PY
