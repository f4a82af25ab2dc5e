#!/usr/bin/env bash
# Packets/s dropped by Tapio's XDP block list vs an nftables drop rule (netdev
# ingress, the earliest nftables hook) vs no filter, on the same veth with the
# same generator (trafgen, one CPU, a fixed number of 60-byte UDP frames), in
# one run; plus the filter's kernel ns per packet from bpf_stats and from
# BPF_PROG_TEST_RUN (bpftool prog run ... repeat).
#
#   N=2000000 RUNS=3 bash bench/xdp_drop.sh
#
# Namespaces tapio-xb-h / tapio-xb-a, 198.18.10.0/24 only; removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
N=${N:-2000000}
RUNS=${RUNS:-3}
TAPIO=${TAPIO:-${CARGO_TARGET_DIR:-target}/release/tapio}
command -v trafgen >/dev/null || { echo "trafgen missing: apt-get install netsniff-ng" >&2; exit 1; }
[ -x "$TAPIO" ] || { echo "build first: cargo build --release" >&2; exit 1; }

H=tapio-xb-h A=tapio-xb-a
work=$(mktemp -d)
cleanup() {
	[ -n "${tp:-}" ] && kill "$tp" 2>/dev/null && wait "$tp" 2>/dev/null
	ip netns del $H 2>/dev/null || true
	ip netns del $A 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
for ns in $H $A; do ip netns del $ns 2>/dev/null || true; ip netns add $ns; ip -n $ns link set lo up; done
ip -n $H link add txbh type veth peer name txba netns $A
ip -n $H addr add 198.18.10.1/24 dev txbh
ip -n $A addr add 198.18.10.2/24 dev txba
ip -n $H link set txbh up
ip -n $A link set txba up
hmac=$(ip -n $H -j link show txbh | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["address"])')
amac=$(ip -n $A -j link show txba | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["address"])')
cat > "$work/pkt.cfg" <<CFG
{
  eth(da=$hmac, sa=$amac, type=0x0800),
  ipv4(saddr=198.18.10.2, daddr=198.18.10.1, ttl=64, proto=17),
  udp(sport=1000, dport=9),
  fill(0x41, 18)
}
CFG
# The same frame as bytes, for BPF_PROG_TEST_RUN.
python3 - "$hmac" "$amac" > "$work/pkt.bin" <<'PY'
import sys, struct
d = bytes.fromhex(sys.argv[1].replace(':', '')); s = bytes.fromhex(sys.argv[2].replace(':', ''))
udp = struct.pack('!HHHH', 1000, 9, 26, 0) + b'A' * 18
ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, bytes([198,18,10,2]), bytes([198,18,10,1]))
sys.stdout.buffer.write(d + s + b'\x08\x00' + ip + udp)
PY

# Seconds trafgen takes to put N frames on the wire from the attacker.
send() {
	local t0 t1
	t0=$(date +%s.%N)
	ip netns exec $A trafgen --dev txba --conf "$work/pkt.cfg" -n "$N" --cpus 1 -q >/dev/null 2>&1
	t1=$(date +%s.%N)
	echo "$t1 - $t0" | bc -l
}

sysctl -qw kernel.bpf_stats_enabled=1
declare -A pps
measure() { # name
	local all=()
	for _ in $(seq 1 "$RUNS"); do
		s=$(send)
		all+=("$(echo "$N / $s" | bc -l | cut -d. -f1)")
	done
	pps[$1]=$(printf '%s\n' "${all[@]}" | median)
}

measure none

ip netns exec $H nft -f - <<NFT
table netdev tapio_bench {
  chain ingress { type filter hook ingress device "txbh" priority -500; ip saddr 198.18.10.2 counter drop; }
}
NFT
measure nftables
ndrop=$(ip netns exec $H nft list chain netdev tapio_bench ingress | grep -o 'packets [0-9]*' | awk '{print $2}')
ip netns exec $H nft delete table netdev tapio_bench

for mode in native generic; do
cat > "$work/tapio.yaml" <<YAML
exporters: { stdout: {} }
pipeline: { metrics: { export_interval: 1s } }
probes:
  process: { enabled: false }
  network: { enabled: false }
  dns: { enabled: false }
  xdp:
    interfaces: [txbh]
    mode: $mode
    policy: { block: [198.18.10.2/32] }
YAML
: >"$work/err"
nsenter --net=/run/netns/$H "$TAPIO" run --config "$work/tapio.yaml" >"$work/out.jsonl" 2>"$work/err" &
tp=$!
wait_for "$work/err" "tapio ready"
measure "xdp-$mode"
if [ "$mode" = native ]; then
	read -r xdp_ns xdp_runs < <(prog_ns tapio_xdp_filte)
	id=$(bpftool prog show -j | python3 -c 'import json,sys; print(max(p["id"] for p in json.load(sys.stdin) if p.get("name","").startswith("tapio_xdp_filte")))')
	# bpf_stats' own clock reads cost ~80 ns a run on this VM: off for this.
	sysctl -qw kernel.bpf_stats_enabled=0
	testrun_ns=$(bpftool prog run id "$id" data_in "$work/pkt.bin" repeat 1000000 2>&1 | grep -o 'duration[^:]*: *[0-9]*' | awk '{print $NF}')
	sysctl -qw kernel.bpf_stats_enabled=1
fi
kill "$tp"; wait "$tp" 2>/dev/null || true; tp=
done
sysctl -qw kernel.bpf_stats_enabled=0

printf 'frames per run: %d x %d runs (60-byte UDP, one sender CPU, median)\n' "$N" "$RUNS"
printf '%-12s %12s %10s\n' filter 'frames/s' 'vs none'
for k in none nftables xdp-native xdp-generic; do
	printf '%-12s %12d %10.2f\n' "$k" "${pps[$k]}" "$(echo "${pps[$k]} / ${pps[none]}" | bc -l)"
done
printf 'xdp (native) / nftables: %.2f   xdp (generic) / nftables: %.2f\n' \
	"$(echo "${pps[xdp-native]} / ${pps[nftables]}" | bc -l)" "$(echo "${pps[xdp-generic]} / ${pps[nftables]}" | bc -l)"
printf 'nftables rule counted %s drops in its last run\n' "$ndrop"
printf 'tapio_xdp_filter: %s ns/packet over %s packets (bpf_stats, including its own clock reads); %s ns/packet (BPF_PROG_TEST_RUN, 1e6 repeats, block-list drop, stats off)\n' \
	"$xdp_ns" "$xdp_runs" "$testrun_ns"
