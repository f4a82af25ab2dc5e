#!/usr/bin/env bash
# Syscall hot loops the security probe hooks, side by side in one run:
#   alone | with tapio's security probe (credentials, code injection, BPF,
#   modules on; capabilities off, the default; one watched file and one
#   watched directory).
# Workloads (a small C program, N calls each, ns per call):
#   write-unwatched  write(2) of 1 byte to a file nobody watches
#   write-watched    write(2) of 1 byte to a watched file (deduplicated:
#                    one record per second for the whole loop)
#   open-close       openat(O_RDONLY)+close of an unwatched file
#   setresuid        setresuid(0,0,0): both cred hooks run, nothing changes
#   mmap-munmap      anonymous mmap+munmap (the W+X check runs on each)
# Prints the median ns/call of RUNS runs, the ratio to "alone", and kernel
# ns per run of each program (bpf_stats). Asserts nothing.
#
#   N=200000 RUNS=5 bash bench/security_overhead.sh
set -euo pipefail
N=${N:-200000}
RUNS=${RUNS:-5}
TAPIO=${TAPIO:-${CARGO_TARGET_DIR:-target}/release/tapio}
[ -x "$TAPIO" ] || { echo "build first: cargo build --release ($TAPIO missing)"; exit 1; }
[ "$(id -u)" = 0 ] || { echo "needs root"; exit 1; }
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; sysctl -qw kernel.bpf_stats_enabled=0 || true; rm -rf "$work"' EXIT
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

cat >"$work/load.c" <<'C'
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
static long long now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1000000000LL + t.tv_nsec; }
int main(int argc, char **argv) {
	const char *what = argv[1], *path = argv[2]; long n = atol(argv[3]);
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0600);
	long long t0 = now();
	for (long i = 0; i < n; i++) {
		if (!strcmp(what, "write")) { if (write(fd, "x", 1) != 1) return 1; }
		else if (!strcmp(what, "open")) { int f = open(path, O_RDONLY); close(f); }
		else if (!strcmp(what, "setresuid")) { if (setresuid(0, 0, 0)) return 1; }
		else if (!strcmp(what, "mmap")) { void *p = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0); munmap(p, 4096); }
		if (i % 4096 == 0 && !strcmp(what, "write")) ftruncate(fd, 0);
	}
	printf("%.1f\n", (double)(now() - t0) / n);
	return 0;
}
C
cc -O2 -o "$work/load" "$work/load.c"
mkdir -p "$work/watched-dir"
touch "$work/watched" "$work/unwatched"

WORKLOADS="write-unwatched write-watched open-close setresuid mmap-munmap"
one() { # workload -> ns/call
	case $1 in
	write-unwatched) "$work/load" write "$work/unwatched" "$N" ;;
	write-watched) "$work/load" write "$work/watched" "$N" ;;
	open-close) "$work/load" open "$work/unwatched" "$N" ;;
	setresuid) "$work/load" setresuid "$work/unwatched" "$N" ;;
	mmap-munmap) "$work/load" mmap "$work/unwatched" "$N" ;;
	esac
}

cat >"$work/tapio.yaml" <<Y
probes:
  process: { enabled: false }
  network: { enabled: false }
  dns: { enabled: false }
  security: { enabled: true, watch_paths: [$work/watched, $work/watched-dir] }
exporters: { stdout: {} }
Y

sysctl -qw kernel.bpf_stats_enabled=1
declare -A alone with
for r in $(seq 1 "$RUNS"); do
	for w in $WORKLOADS; do alone[$w]+="$(one "$w") "; done
	"$TAPIO" run --config "$work/tapio.yaml" >"$work/tapio.json" 2>"$work/tapio.err" &
	tp=$!
	wait_for "$work/tapio.err" "tapio ready"
	for w in $WORKLOADS; do with[$w]+="$(one "$w") "; done
	if [ "$r" = "$RUNS" ]; then
		# Kernel cost per program run, from the last run's programs.
		bpftool prog show -j | python3 -c '
import json,sys
rows=[(p["name"],p.get("run_time_ns",0),p.get("run_cnt",0)) for p in json.load(sys.stdin) if p.get("name","").startswith("tapio_sec")]
for n,t,c in sorted(rows):
    if c: print(f"  {n:<16} {t/c:8.0f} ns/run  {c:>9} runs")' >"$work/progs.txt"
	fi
	kill -INT "$tp"; wait "$tp" || true
done
printf '%-16s %12s %12s %8s\n' workload "alone ns" "tapio ns" ratio
for w in $WORKLOADS; do
	a=$(echo "${alone[$w]}" | tr ' ' '\n' | grep . | median)
	t=$(echo "${with[$w]}" | tr ' ' '\n' | grep . | median)
	printf '%-16s %12s %12s %8.3f\n' "$w" "$a" "$t" "$(echo "$t $a" | awk '{print $1 / $2}')"
done
echo "kernel ns per program run (bpf_stats, last run):"
cat "$work/progs.txt"
echo "records exported in the last run: $(grep -o '"eventName":"security[^"]*"' "$work/tapio.json" | sort | uniq -c | tr '\n' ';')"
