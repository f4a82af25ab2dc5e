#!/usr/bin/env bash
# io_uring-heavy workload (N NOPs through one ring, submitted in batches of
# 32 by integration/tests/io_uring_ops.py), side by side in one run:
#   alone | tapio kernel probe counting every completion by opcode and
#   result (rate 0: no timing, no submission hook) | the same timing 5 %
#   of requests (the default) | the same timing every
#   request | bpftrace counting completions by opcode and result (the
#   same count, no timing, nothing exported)
# Prints median wall time, slowdown ratios, kernel ns per operation (the
# submit and complete programs' run time over the operations), and whether
# each tool's count equals N. A benchmark, not a test: it asserts nothing.
#
#   N=200000 RUNS=5 bash bench/io_uring_overhead.sh
set -euo pipefail
N=${N:-200000}
RUNS=${RUNS:-5}
TAPIO=${TAPIO:-${CARGO_TARGET_DIR:-target}/release/tapio}
OPS=$(cd "$(dirname "$0")/.." && pwd)/integration/tests/io_uring_ops.py
[ -x "$TAPIO" ] || { echo "build first: cargo build --release ($TAPIO missing)"; exit 1; }
[ "$(id -u)" = 0 ] || { echo "needs root"; exit 1; }
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; sysctl -qw kernel.bpf_stats_enabled=0 || true; rm -rf "$work"' EXIT
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

workload() { # prints wall ns
	local t0 t1
	t0=$(date +%s%N)
	echo | python3 "$OPS" "$work/out" "$N" 0 >/dev/null
	t1=$(date +%s%N)
	echo $((t1 - t0))
}

tapio_run() { # rate -> "wall_ns kernel_ns_total nop_count"
	cat >"$work/tapio.yaml" <<Y
probes: { process: { enabled: false }, network: { enabled: false }, dns: { enabled: false }, security: { enabled: false }, kernel: { io_uring_sample_rate: $1 } }
exporters: { stdout: {} }
pipeline: { metrics: { export_interval: 500ms } }
Y
	"$TAPIO" run --config "$work/tapio.yaml" >"$work/tapio.json" 2>"$work/tapio.err" &
	local tp=$! w k
	wait_for "$work/tapio.err" "tapio ready"
	w=$(workload)
	# tapio_io_uring_* is cut to 15 characters in bpftool's name.
	read -r k _ < <(prog_total tapio_io_uring_)
	sleep 1.2
	kill -INT $tp
	wait $tp || true
	local n
	n=$(python3 - "$work/tapio.json" <<'PY'
import json, sys
last = 0
for line in open(sys.argv[1]):
    for rm in json.loads(line).get("resourceMetrics", []):
        for sm in rm["scopeMetrics"]:
            for m in sm["metrics"]:
                if m["name"] != "tapio.io_uring.operations":
                    continue
                for p in m["sum"]["dataPoints"]:
                    a = {x["key"]: x["value"].get("stringValue") for x in p["attributes"]}
                    if a.get("tapio.io_uring.opcode") == "nop" and a.get("tapio.io_uring.result") == "ok":
                        last = int(p["asInt"])
print(last)
PY
)
	echo "$w $k $n"
}

workload >/dev/null # warm up
sysctl -qw kernel.bpf_stats_enabled=1
declare -a base t0 t5 t100 bt k0 k5 k100 kbt n0 n5 n100 nbt
for r in $(seq 1 "$RUNS"); do
	base+=("$(workload)")
	read -r w k n < <(tapio_run 0)
	t0+=("$w"); k0+=("$k"); n0+=("$n")
	read -r w k n < <(tapio_run 0.05)
	t5+=("$w"); k5+=("$k"); n5+=("$n")
	read -r w k n < <(tapio_run 1.0)
	t100+=("$w"); k100+=("$k"); n100+=("$n")
	bpftrace -e 'tracepoint:io_uring:io_uring_complete /args->req != 0/ { @ops[((struct io_kiocb *)args->req)->opcode, args->res < 0] = count(); }' >"$work/bt.txt" 2>&1 &
	bp=$!
	wait_for "$work/bt.txt" "Attaching"
	sleep 1
	w=$(workload)
	# bpftrace names its program after the event (cut to 15 characters).
	read -r k _ < <(prog_total io_uring_comple)
	# bpftrace prints its maps on SIGINT; one sent while it is still
	# settling in can go unheeded, so ask again (bounded), then stop it.
	for _ in $(seq 1 20); do
		kill -INT $bp 2>/dev/null || break
		sleep 0.5
	done
	kill -TERM $bp 2>/dev/null || true
	wait $bp 2>/dev/null || true
	bt+=("$w"); kbt+=("$k")
	nbt+=("$(awk -F': ' '/@ops\[0, 0\]/ {print $2}' "$work/bt.txt")")
	echo "run $r: alone $((base[-1] / 1000000)) ms, tapio 0% $((t0[-1] / 1000000)) ms (nop=${n0[-1]}), tapio 5% $((t5[-1] / 1000000)) ms (nop=${n5[-1]}), tapio 100% $((t100[-1] / 1000000)) ms (nop=${n100[-1]}), bpftrace $((bt[-1] / 1000000)) ms (nop=${nbt[-1]:-?})"
done
B=$(printf '%s\n' "${base[@]}" | median)
T0=$(printf '%s\n' "${t0[@]}" | median); K0=$(printf '%s\n' "${k0[@]}" | median)
T5=$(printf '%s\n' "${t5[@]}" | median); T100=$(printf '%s\n' "${t100[@]}" | median); BT=$(printf '%s\n' "${bt[@]}" | median)
K5=$(printf '%s\n' "${k5[@]}" | median); K100=$(printf '%s\n' "${k100[@]}" | median); KBT=$(printf '%s\n' "${kbt[@]}" | median)
python3 - "$N" "$B" "$T5" "$T100" "$BT" "$K5" "$K100" "$KBT" "${n5[-1]}" "${n100[-1]}" "${nbt[-1]:-0}" "$T0" "$K0" "${n0[-1]}" <<'PY'
import sys
n, b, t5, t100, bt, k5, k100, kbt = map(int, sys.argv[1:9])
n5, n100, nbt = sys.argv[9:12]
t0, k0 = int(sys.argv[12]), int(sys.argv[13]); n0 = sys.argv[14]
print(f"\nio_uring workload: {n} NOPs in batches of 32 through one ring (python, raw syscalls), median of runs")
print("| setup | wall (ms) | slowdown vs alone | kernel ns per operation (submit + complete programs) | NOPs counted |")
print("|---|---|---|---|---|")
print(f"| alone | {b/1e6:.0f} | 1.000 | - | - |")
print(f"| tapio, counts only (io_uring_sample_rate: 0) | {t0/1e6:.0f} | {t0/b:.3f} | {k0/n:.0f} | {n0} |")
print(f"| tapio, 5 % timed (default) | {t5/1e6:.0f} | {t5/b:.3f} | {k5/n:.0f} | {n5} |")
print(f"| tapio, every request timed | {t100/1e6:.0f} | {t100/b:.3f} | {k100/n:.0f} | {n100} |")
print(f"| bpftrace count by opcode+result (complete only) | {bt/1e6:.0f} | {bt/b:.3f} | {kbt/n:.0f} | {nbt} |")
PY
