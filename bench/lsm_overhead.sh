#!/usr/bin/env bash
# Added latency of connect() with the lsm probe's cgroup hooks attached and
# N rules (1, 100, 10,000), against no program, in one run; plus the
# kernel ns per hook call from bpf_stats. The workload is a C loop of
# socket(UDP) + connect(127.0.0.1:9) + close: a UDP connect does no
# handshake, so the hooks (sock_create + connect4) are as large a share of
# the syscalls' cost as they can be. The rules never match the workload
# (the usual case: a lookup that misses); "deny" adds a rule that matches,
# so every connect is refused and reported.
#
#   N=200000 RUNS=5 bash bench/lsm_overhead.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
N=${N:-200000}
RUNS=${RUNS:-5}
TAPIO=${TAPIO:-${CARGO_TARGET_DIR:-target}/release/tapio}
[ -x "$TAPIO" ] || { echo "build first: cargo build --release" >&2; exit 1; }
work=$(mktemp -d)
tp=
cleanup() { [ -n "$tp" ] && kill "$tp" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

cat >"$work/loop.c" <<'C'
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv)
{
	long n = atol(argv[1]);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(9)};
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (long i = 0; i < n; i++) {
		int s = socket(AF_INET, SOCK_DGRAM, 0);
		connect(s, (struct sockaddr *)&a, sizeof(a));
		close(s);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("%.0f\n", ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / n);
	return 0;
}
C
clang-19 -O2 -o "$work/loop" "$work/loop.c"

run() { for _ in $(seq 1 "$RUNS"); do "$work/loop" "$N"; done | median; }

config() { # rules-count [deny]
	python3 - "$1" "${2:-}" >"$work/tapio.yaml" <<'PY'
import sys
n = int(sys.argv[1]); deny = sys.argv[2] == "deny"
print("exporters: { stdout: {} }")
print("probes:\n  process: { enabled: false }\n  network: { enabled: false }\n  dns: { enabled: false }\n  security: { enabled: false }")
print("  lsm:\n    policy:\n      rules:")
for i in range(n):
    print(f"        - {{ name: r{i}, hook: connect, action: deny, match: {{ address: 198.{18 + i // 65536 % 2}.{i // 256 % 256}.{i % 256}/32, port: 80 }} }}")
if deny:
    print("        - { name: hit, hook: connect, action: deny, match: { address: 127.0.0.1/32, port: 9, protocol: udp } }")
PY
}

sysctl -qw kernel.bpf_stats_enabled=1
declare -A ns kns
base=$(run)
for spec in 1 100 10000 "1 deny"; do
	config $spec
	"$TAPIO" run --config "$work/tapio.yaml" >/dev/null 2>"$work/err" &
	tp=$!
	wait_for "$work/err" "tapio ready"
	ns[$spec]=$(run)
	read -r k _ < <(prog_ns tapio_lsm_conne)
	read -r s _ < <(prog_ns tapio_lsm_sock_)
	kns[$spec]="connect4 $k ns, sock_create $s ns"
	kill "$tp"; wait "$tp" 2>/dev/null || true; tp=
done
sysctl -qw kernel.bpf_stats_enabled=0
# Again at the end: the difference between the two baselines is the run's
# drift (other load on the machine), the error bar of the ratios.
base2=$(run)

printf 'socket+connect(UDP)+close, %d per run, median of %d runs\n' "$N" "$RUNS"
printf '%-22s %8s %7s  %s\n' setup 'ns/iter' ratio 'kernel ns per hook call (bpf_stats)'
printf '%-22s %8d %7.2f\n' 'no program' "$base" 1
printf '%-22s %8d %7.2f\n' 'no program (again)' "$base2" "$(echo "$base2 / $base" | bc -l)"
for spec in 1 100 10000 "1 deny"; do
	label="$spec rules (miss)"
	[ "$spec" = "1 deny" ] && label="1 rule + matching deny"
	printf '%-22s %8d %7.2f  %s\n' "$label" "${ns[$spec]}" "$(echo "${ns[$spec]} / $base" | bc -l)" "${kns[$spec]}"
done
