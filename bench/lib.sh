# Helpers shared by the benchmark scripts (sourced, not run).

# CPU time (user+system) of a process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# Wait until file $1 contains $2 (at most 15 s).
wait_for() {
	for _ in $(seq 1 300); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
	echo "timed out waiting for $2 in $1" >&2
	return 1
}

# Median of the numbers on stdin.
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# Total run_time_ns and run_cnt of every loaded BPF program whose name
# starts with $1 (needs kernel.bpf_stats_enabled=1).
prog_total() {
	bpftool prog show -j | python3 -c '
import json,sys
pre=sys.argv[1]; t=c=0
for p in json.load(sys.stdin):
    if p.get("name","").startswith(pre):
        t+=p.get("run_time_ns",0); c+=p.get("run_cnt",0)
print(t, c)' "$1"
}

# Kernel ns per run, and runs, of those programs.
prog_ns() {
	local t c
	read -r t c < <(prog_total "$1")
	if [ "$c" -gt 0 ]; then echo "$((t / c)) $c"; else echo "n/a $c"; fi
}
