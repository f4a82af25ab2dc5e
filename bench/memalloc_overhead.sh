#!/usr/bin/env bash
# Allocation-heavy workload, side by side in one run:
#   alone | tapio sampling page + slab allocations 1:1 | 1:100 (default) | 1:1000
# The workload (a small C program built here) maps, touches and unmaps
# anonymous memory (huge pages off: one page allocation per 4 KiB touched)
# and makes and closes pipes (kmalloc + kmem_cache objects).
# Wall times are taken with kernel.bpf_stats_enabled=0 (the stats cost two
# clock reads per program run); kernel ns per allocation comes from a
# separate pass with stats on: the tapio_mem_* programs' run time over
# their runs during the workload (every hooked allocation on the machine
# in that window, sampled or not). Prints medians. A benchmark, not a
# test: it asserts nothing.
#
#   MIB=256 PIPES=20000 RUNS=5 bash bench/memalloc_overhead.sh
set -euo pipefail
MIB=${MIB:-256}
PIPES=${PIPES:-20000}
RUNS=${RUNS:-5}
TAPIO=${TAPIO:-${CARGO_TARGET_DIR:-target}/release/tapio}
[ -x "$TAPIO" ] || { echo "build first: cargo build --release ($TAPIO missing)"; exit 1; }
[ "$(id -u)" = 0 ] || { echo "needs root"; exit 1; }
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; sysctl -qw kernel.bpf_stats_enabled=0 || true; rm -rf "$work"' EXIT
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

cat >"$work/alloc.c" <<'C'
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>
int main(int argc, char **argv)
{
	size_t chunk = 16 << 20;
	long rounds = atol(argv[1]) / 16, pipes = atol(argv[2]);
	for (long r = 0; r < rounds; r++) {
		volatile char *p = mmap(0, chunk, PROT_READ | PROT_WRITE,
					MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			return 1;
		madvise((void *)p, chunk, MADV_NOHUGEPAGE);
		for (size_t o = 0; o < chunk; o += 4096)
			p[o] = 1;
		munmap((void *)p, chunk);
	}
	for (long i = 0; i < pipes; i++) {
		int fd[2];
		if (pipe(fd) == 0) {
			close(fd[0]);
			close(fd[1]);
		}
	}
	return 0;
}
C
cc -O2 -o "$work/alloc" "$work/alloc.c"

workload() { # prints wall ns
	local t0 t1
	t0=$(date +%s%N)
	"$work/alloc" "$MIB" "$PIPES"
	t1=$(date +%s%N)
	echo $((t1 - t0))
}

start_tapio() { # every
	cat >"$work/tapio.yaml" <<Y
probes: { process: { enabled: false }, network: { enabled: false }, dns: { enabled: false }, security: { enabled: false }, kernel: { oom_kill: false, io_uring: false, memory_sample_every: $1 } }
exporters: { stdout: {} }
pipeline: { metrics: { export_interval: 1s } }
Y
	: >"$work/tapio.err"
	"$TAPIO" run --config "$work/tapio.yaml" >"$work/tapio.json" 2>"$work/tapio.err" &
	tp=$!
	wait_for "$work/tapio.err" "tapio ready"
}

stop_tapio() {
	kill -INT "$tp"
	wait "$tp" || true
}

tapio_wall() { # every -> wall ns
	start_tapio "$1"
	workload
	stop_tapio
}

tapio_ns() { # every -> "ns_per_allocation allocations_hooked"
	start_tapio "$1"
	local t0 c0 t1 c1
	read -r t0 c0 < <(prog_total tapio_mem_)
	workload >/dev/null
	read -r t1 c1 < <(prog_total tapio_mem_)
	stop_tapio
	echo "$(((t1 - t0) / (c1 - c0))) $((c1 - c0))"
}

sysctl -qw kernel.bpf_stats_enabled=0
workload >/dev/null # warm up
declare -a base t1 t100 t1000
for r in $(seq 1 "$RUNS"); do
	base+=("$(workload)")
	t1+=("$(tapio_wall 1)")
	t100+=("$(tapio_wall 100)")
	t1000+=("$(tapio_wall 1000)")
	echo "run $r: alone $((base[-1] / 1000000)) ms, 1:1 $((t1[-1] / 1000000)) ms, 1:100 $((t100[-1] / 1000000)) ms, 1:1000 $((t1000[-1] / 1000000)) ms"
done
sysctl -qw kernel.bpf_stats_enabled=1
declare -a k1 k100 k1000 c1
for r in $(seq 1 "$RUNS"); do
	read -r k c < <(tapio_ns 1); k1+=("$k"); c1+=("$c")
	read -r k _ < <(tapio_ns 100); k100+=("$k")
	read -r k _ < <(tapio_ns 1000); k1000+=("$k")
	echo "stats run $r: ns per allocation 1:1 ${k1[-1]}, 1:100 ${k100[-1]}, 1:1000 ${k1000[-1]} (${c1[-1]} allocations hooked at 1:1)"
done
sysctl -qw kernel.bpf_stats_enabled=0
m() { printf '%s\n' "$@" | median; }
python3 - "$MIB" "$PIPES" "$(m "${base[@]}")" "$(m "${t1[@]}")" "$(m "${t100[@]}")" "$(m "${t1000[@]}")" \
	"$(m "${k1[@]}")" "$(m "${k100[@]}")" "$(m "${k1000[@]}")" "$(m "${c1[@]}")" "$(cat /proc/loadavg)" <<'PY'
import sys
mib, pipes = sys.argv[1:3]
b, t1, t100, t1000, k1, k100, k1000, c1 = map(int, sys.argv[3:11])
print(f"\nallocation workload: {mib} MiB touched in 16 MiB maps + {pipes} pipes, ~{c1} hooked allocations per run (at 1:1, whole machine); median of runs; load average at the end: {sys.argv[11]}")
print("| setup | wall (ms) | slowdown vs alone | kernel ns per allocation (bpf_stats pass) |")
print("|---|---|---|---|")
print(f"| alone | {b/1e6:.0f} | 1.000 | - |")
for name, t, k in (("1:1", t1, k1), ("1:100 (default)", t100, k100), ("1:1000", t1000, k1000)):
    print(f"| tapio {name} | {t/1e6:.0f} | {t/b:.3f} | {k} |")
print(f"\nkernel ns per allocation, 1:1 over 1:100: {k1/max(k100,1):.1f}x; slowdown over alone, 1:1 {t1/b-1:+.1%}, 1:100 {t100/b-1:+.1%}, 1:1000 {t1000/b-1:+.1%}")
PY
