#!/usr/bin/env bash
# Syscall hot loops the security probe hooks, side by side in one run:
#   alone | tapio, syscall dispatcher (`syscalls: dispatch`) | tapio,
#   per-syscall tracepoints (`syscalls: per_syscall`, the default)
# with the security probe's defaults (credentials, code injection, BPF,
# modules on; capabilities off) plus one watched file and one watched
# directory.
# Workloads (a small C program, N calls each, ns per call):
#   write-unwatched  write(2) of 1 byte to a file nobody watches
#   write-unwatched-wide  the same from a process whose fd table has grown
#                    past 64 fds (the probe then reads the fd table
#                    with bpf_probe_read_kernel)
#   write-watched    write(2) of 1 byte to a watched file (deduplicated:
#                    one record per second for the whole loop)
#   open-close       openat(O_RDONLY)+close of an unwatched file
#   setresuid        setresuid(0,0,0): both cred hooks run, nothing changes
#   mmap-munmap      anonymous mmap+munmap (the W+X check runs on each)
#   getppid          a syscall no family hooks (the dispatcher's one
#                    array lookup; no hook at all on the per-syscall path)
# Timed with kernel.bpf_stats_enabled=0 (its clock reads around every
# program run would inflate the "with" figures); then one more loop per
# workload with stats on gives the kernel ns per call of the programs on
# its path. Prints the median ns/call of RUNS runs and the ratio to
# "alone". Asserts nothing.
#
#   N=200000 RUNS=5 bash bench/security_overhead.sh
#   MODES=per_syscall BASE=/tmp/tapio-before N=200000 RUNS=7 bash bench/security_overhead.sh
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
#include <sys/wait.h>
#include <unistd.h>
static long long now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1000000000LL + t.tv_nsec; }
int main(int argc, char **argv) {
	const char *what = argv[1], *path = argv[2]; long n = atol(argv[3]);
	/* The loop runs in a child forked with only fds 0-2 open, so its fd
	 * table is the default one inside files_struct (64 fds), as for a
	 * process a container runtime or service manager starts; forked
	 * straight from this script it would inherit a grown table (bash
	 * holds fd 255). argv[4] == "wide" grows it again (an fd at 100). */
	close_range(3, ~0U, 0);
	pid_t child = fork();
	if (child < 0) return 1;
	if (child > 0) { int st; waitpid(child, &st, 0); return WIFEXITED(st) ? WEXITSTATUS(st) : 1; }
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0600);
	if (argc > 4 && !strcmp(argv[4], "wide") && dup2(fd, 100) != 100) return 1;
	long long t0 = now();
	for (long i = 0; i < n; i++) {
		if (!strcmp(what, "write")) { if (write(fd, "x", 1) != 1) return 1; }
		else if (!strcmp(what, "open")) { int f = open(path, O_RDONLY); close(f); }
		else if (!strcmp(what, "setresuid")) { if (setresuid(0, 0, 0)) return 1; }
		else if (!strcmp(what, "mmap")) { void *p = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0); munmap(p, 4096); }
		else if (!strcmp(what, "getppid")) { if (getppid() < 0) return 1; }
		if (i % 4096 == 0 && !strcmp(what, "write")) ftruncate(fd, 0);
	}
	printf("%.1f\n", (double)(now() - t0) / n);
	return 0;
}
C
cc -O2 -o "$work/load" "$work/load.c"
mkdir -p "$work/watched-dir"
touch "$work/watched" "$work/unwatched"

WORKLOADS=${WORKLOADS:-"write-unwatched write-unwatched-wide write-watched open-close setresuid mmap-munmap getppid"}
# The loops run SCHED_FIFO (RT=0 turns it off): on a machine other work
# shares, a loop preempted by a compiler mid-run reads as a dearer syscall;
# at real-time priority only interrupts and the kernel's own work interleave.
# Each loop is well under a second, and the kernel's RT throttling (5 % of
# every second left to others) bounds it anyway.
PRIO=()
if [ "${RT:-1}" != 0 ] && command -v chrt >/dev/null; then PRIO=(chrt -f 10); fi
one() { # workload -> ns/call
	case $1 in
	write-unwatched) "${PRIO[@]}" "$work/load" write "$work/unwatched" "$N" ;;
	write-unwatched-wide) "${PRIO[@]}" "$work/load" write "$work/unwatched" "$N" wide ;;
	write-watched) "${PRIO[@]}" "$work/load" write "$work/watched" "$N" ;;
	open-close) "${PRIO[@]}" "$work/load" open "$work/unwatched" "$N" ;;
	setresuid) "${PRIO[@]}" "$work/load" setresuid "$work/unwatched" "$N" ;;
	mmap-munmap) "${PRIO[@]}" "$work/load" mmap "$work/unwatched" "$N" ;;
	getppid) "${PRIO[@]}" "$work/load" getppid "$work/unwatched" "$N" ;;
	esac
}

MODES=${MODES:-"dispatch per_syscall"}
# BASE=<another tapio binary> adds a column: that build on the per-syscall
# path, interleaved with the others (a change against the build before it,
# in one run).
if [ -n "${BASE:-}" ]; then MODES="$MODES base"; fi
# The config lives in a directory of its own, as in a deployment
# (/etc/tapio): Tapio watches its config's directory for reloads, and a
# workload writing beside it would time Tapio's reload watcher waking on
# every write (it did: 1,036 ns per unwatched write instead of ~500).
mkdir -p "$work/etc"
config() { # mode -> config path
	cat >"$work/etc/tapio-$1.yaml" <<Y
probes:
  process: { enabled: false }
  network: { enabled: false }
  dns: { enabled: false }
  security: { enabled: true, syscalls: $1, watch_paths: [$work/watched, $work/watched-dir] }
exporters: { stdout: {} }
Y
	echo "$work/etc/tapio-$1.yaml"
}

# Per program: run_time_ns and run_cnt of Tapio's security programs.
sec_stats() {
	bpftool prog show -j | python3 -c '
import json,sys
for p in json.load(sys.stdin):
    if p.get("name","").startswith("tapio_sec"):
        print(p["id"], p["name"], p.get("run_time_ns",0), p.get("run_cnt",0))'
}
# Kernel ns per workload call of each program that ran, from two sec_stats.
stats_delta() { # before after calls
	python3 - "$1" "$2" "$3" <<'PY'
import sys
def load(f):
    return {l.split()[0]: l.split() for l in open(f) if l.strip()}
a, b, n = load(sys.argv[1]), load(sys.argv[2]), int(sys.argv[3])
rows, total = [], 0
for k, (i, name, t, c) in b.items():
    t0, c0 = (int(a[k][2]), int(a[k][3])) if k in a else (0, 0)
    dt, dc = int(t) - t0, int(c) - c0
    # Programs that ran at least once per workload call.
    if dc >= n:
        rows.append(f"{name} {dt / dc:.0f} ns/run x {dc / n:.1f}")
        total += dt / n
print(f"{total:.0f} ns/call: " + "; ".join(sorted(rows)) if rows else "none")
PY
}

run_tapio() { # mode -> pid (waits until ready, checks the variant)
	rm -f "$work/tapio.err"
	local bin=$TAPIO syscalls=$1
	if [ "$1" = base ]; then bin=$BASE syscalls=per_syscall; fi
	"$bin" run --config "$(config "$syscalls")" >"$work/tapio.json" 2>"$work/tapio.err" &
	echo $! >"$work/tapio.pid"
	wait_for "$work/tapio.err" "tapio ready"
	local v
	v=$(grep -o 'security=[^ ,"]*' "$work/tapio.err" | head -1)
	case "$1:$v" in
	dispatch:*+dispatch*) ;;
	per_syscall:*+dispatch*) echo "per_syscall attached $v" >&2; exit 1 ;;
	per_syscall:* | base:*) ;;
	*) echo "$1 attached $v" >&2; exit 1 ;;
	esac
	echo "$v" >"$work/variant-$1"
}
stop_tapio() { local tp; tp=$(cat "$work/tapio.pid"); kill -INT "$tp"; wait "$tp" || true; }

sysctl -qw kernel.bpf_stats_enabled=0
declare -A alone with kstat
for r in $(seq 1 "$RUNS"); do
	for w in $WORKLOADS; do alone[$w]+="$(one "$w") "; done
	for m in $MODES; do
		run_tapio "$m"
		for w in $WORKLOADS; do with[$m,$w]+="$(one "$w") "; done
		if [ "$r" = "$RUNS" ]; then
			sysctl -qw kernel.bpf_stats_enabled=1
			for w in $WORKLOADS; do
				sec_stats >"$work/s0"
				one "$w" >/dev/null
				sec_stats >"$work/s1"
				kstat[$m,$w]=$(stats_delta "$work/s0" "$work/s1" "$N")
			done
			sysctl -qw kernel.bpf_stats_enabled=0
			grep -o '"eventName":"security[^"]*"' "$work/tapio.json" | sort | uniq -c | tr '\n' ';' >"$work/records-$m" || true
		fi
		stop_tapio
	done
done
med() { echo "$1" | tr ' ' '\n' | grep . | median; }
printf '%-16s %10s' workload "alone ns"
for m in $MODES; do printf ' %14s %7s' "$m ns" ratio; done
echo
for w in $WORKLOADS; do
	a=$(med "${alone[$w]}")
	printf '%-16s %10s' "$w" "$a"
	for m in $MODES; do
		t=$(med "${with[$m,$w]}")
		printf ' %14s %7.2f' "$t" "$(echo "$t $a" | awk '{print $1 / $2}')"
	done
	echo
done
for m in $MODES; do
	echo "$m ($(cat "$work/variant-$m")): kernel cost per call (bpf_stats, one more loop; includes other processes' calls in the window):"
	for w in $WORKLOADS; do printf '  %-16s %s\n' "$w" "${kstat[$m,$w]}"; done
	echo "  records exported: $(cat "$work/records-$m")"
done
