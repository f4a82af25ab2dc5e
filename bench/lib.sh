# Helpers shared by the benchmark scripts (sourced, not run).

# CPU time (user+system) of a process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# Wait until file $1 contains $2 (at most 15 s).
wait_for() {
	for _ in $(seq 1 300); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
	echo "timed out waiting for $2 in $1" >&2
	return 1
}

# IRQ-work interrupts so far, all CPUs (/proc/interrupts' IWI row): a
# ring buffer's forced wakeup raises one.
irq_work() { awk '$1 == "IWI:" {s = 0; for (i = 2; i <= NF; i++) if ($i ~ /^[0-9]+$/) s += $i; print s}' /proc/interrupts; }

# Context switches so far of every live thread of process $1 (voluntary:
# it slept and was woken; nonvoluntary: preempted). A thread that exits
# takes its count along (Tapio's threads live as long as it does); under
# CALLGRIND=1 the process is valgrind, which runs one thread at a time.
ctx_switches() { cat /proc/"$1"/task/*/status | awk '/ctxt_switches/ {s += $2} END {print s + 0}'; }

# Median of the numbers on stdin.
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# Total run_time_ns and run_cnt of every loaded BPF program whose name
# starts with $1 (needs kernel.bpf_stats_enabled=1).
prog_total() {
	bpftool prog show -j | prog_sum "$1"
}

# The same, of a `bpftool prog show -j` listing on stdin.
prog_sum() {
	python3 -c '
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

# The load benches' binaries and collector (sets TAPIO, GEN, COUNT, ROTEL):
# Tapio, the load generator and the receiver that counts, from a release
# build; root; rotel; gcc for the exec target.
load_tools() {
	local bin=${CARGO_TARGET_DIR:-target}/release b
	TAPIO=${TAPIO:-$bin/tapio}
	GEN=$bin/load_gen
	# OTLP_COUNT: another build of the receiver (to compare receivers).
	COUNT=${OTLP_COUNT:-$bin/otlp_count}
	for b in "$TAPIO" "$GEN" "$COUNT"; do
		[ -x "$b" ] || { echo "build first: cargo build --release -p tapio -p tapio-integration ($b missing)"; exit 1; }
	done
	[ "$(id -u)" = 0 ] || { echo "needs root"; exit 1; }
	ROTEL=${ROTEL_AGENT:-$(python3 -c 'import rotel,os;print(os.path.join(os.path.dirname(rotel.__file__),"rotel-agent"))' 2>/dev/null || true)}
	[ -x "$ROTEL" ] || { echo "needs rotel: pip install rotel (or ROTEL_AGENT=path)"; exit 1; }
	command -v gcc >/dev/null || { echo "needs gcc (for the exec target)"; exit 1; }
	GEN=$(realpath "$GEN")
}

# free_ports N: N free loopback TCP ports, below the ephemeral range: a port
# the kernel hands out (bind to 0) can be taken, before the chain binds it,
# by one of the hundreds of thousands of connections a load run makes (a run
# failed so: "Address already in use" for the receiver).
free_ports() {
	python3 -c '
import random,socket,sys
lo=int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
ss=[]
for port in random.sample(range(10000, lo), lo - 10000):
    s=socket.socket()
    try: s.bind(("127.0.0.1",port))
    except OSError: s.close(); continue
    ss.append(s)
    if len(ss) == int(sys.argv[1]): break
print(" ".join(str(s.getsockname()[1]) for s in ss))' "$1"
}
