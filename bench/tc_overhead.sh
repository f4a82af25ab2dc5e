#!/usr/bin/env bash
# tc probe overhead: iperf3 TCP throughput through a veth between two test
# namespaces, alone and with Tapio's classifier on the client's veth
# (ingress + egress), in one run, alternating, median of RUNS; plus the
# classifier's kernel ns per packet from bpf_stats.
#
#   bash bench/tc_overhead.sh            # RUNS=3 SECS=5 by default
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
TAPIO=${TAPIO:-${CARGO_TARGET_DIR:-target}/release/tapio}
RUNS=${RUNS:-3}
SECS=${SECS:-5}
A=tapio-tc-bench-a B=tapio-tc-bench-b
command -v iperf3 >/dev/null || { echo "iperf3 missing: apt-get install -y iperf3" >&2; exit 1; }

cleanup() {
	[[ -n "${TP:-}" ]] && kill "$TP" 2>/dev/null || true
	[[ -n "${SP:-}" ]] && kill "$SP" 2>/dev/null || true
	ip netns del $A 2>/dev/null || true
	ip netns del $B 2>/dev/null || true
	rm -rf "$DIR"
	sysctl -qw kernel.bpf_stats_enabled="$STATS0" || true
}
DIR=$(mktemp -d)
STATS0=$(sysctl -n kernel.bpf_stats_enabled)
trap cleanup EXIT
ip netns add $A; ip netns add $B
ip -n $A link add tvtcbench type veth peer name tvtcbenchb netns $B
ip -n $A addr add 198.18.0.1/24 dev tvtcbench; ip -n $B addr add 198.18.0.2/24 dev tvtcbenchb
ip -n $A link set tvtcbench up; ip -n $B link set tvtcbenchb up
ip -n $A link set lo up; ip -n $B link set lo up
ip netns exec $B iperf3 -s -B 198.18.0.2 -D -I "$DIR/iperf.pid"; sleep 0.5
SP=$(cat "$DIR/iperf.pid")

cat > "$DIR/tapio.yaml" <<YAML
probes:
  process: { enabled: false }
  network: { enabled: false }
  dns: { enabled: false }
  tc: { enabled: true, interfaces: [$A/tvtcbench] }
exporters: { stdout: {} }
pipeline: { metrics: { export_interval: 1s } }
YAML

gbps() { ip netns exec $A iperf3 -c 198.18.0.2 -t "$SECS" -J | python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.2f" % (d["end"]["sum_received"]["bits_per_second"]/1e9))'; }

sysctl -qw kernel.bpf_stats_enabled=1
alone=() with=()
for i in $(seq 1 "$RUNS"); do
	alone+=("$(gbps)")
	"$TAPIO" run --config "$DIR/tapio.yaml" >/dev/null 2>"$DIR/tapio.err" & TP=$!
	wait_for "$DIR/tapio.err" "tapio ready"
	with+=("$(gbps)")
	read -r ns runs < <(prog_ns tapio_tc_)
	echo "run $i: alone ${alone[-1]} Gbit/s, with tc probe ${with[-1]} Gbit/s, classifier ${ns} ns/packet over ${runs} packets"
	kill -INT "$TP"; wait "$TP" || true; TP=
done
ma=$(printf '%s\n' "${alone[@]}" | median)
mw=$(printf '%s\n' "${with[@]}" | median)
echo
echo "| setup | iperf3 TCP (Gbit/s, median of $RUNS × ${SECS}s) | ratio |"
echo "|---|---|---|"
echo "| veth alone | $ma | 1.00 |"
echo "| with the tc probe (ingress+egress, tcx) | $mw | $(python3 -c "print(f'{$mw/$ma:.3f}')") |"
echo "kernel ns per packet (bpf_stats, last run): ${ns} over ${runs} packets"
