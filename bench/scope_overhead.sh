#!/usr/bin/env bash
# The price of probes.scope in the kernel, per program run (bpf_stats),
# side by side in one run: the same workload (execs of a static binary,
# loopback TCP connects, UDP DNS queries) run in a cgroup of its own with
# Tapio (process, network, dns)
#   none  no scope (every task recorded: today's default)
#   in    scope = the workload's cgroup (every event recorded, plus the check)
#   out   scope = another, empty cgroup (every event checked and left out)
# Prints kernel ns per run of the exec, TCP state and DNS egress programs,
# Asserts nothing.
#
#   N=2000 RUNS=3 bash bench/scope_overhead.sh
set -euo pipefail
N=${N:-2000}
RUNS=${RUNS:-3}
TAPIO=${TAPIO:-${CARGO_TARGET_DIR:-target}/release/tapio}
[ -x "$TAPIO" ] || { echo "build first: cargo build --release ($TAPIO missing)"; exit 1; }
[ "$(id -u)" = 0 ] || { echo "needs root"; exit 1; }
command -v gcc >/dev/null || { echo "needs gcc (for the exec target)"; exit 1; }
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
work=$(mktemp -d)
CGROOT=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/self/mounts)
W="tapio-scope-bench-w-$$"
E="tapio-scope-bench-e-$$"
mkdir "$CGROOT/$W" "$CGROOT/$E"
TP=
cleanup() {
	[ -z "$TP" ] || { kill -TERM "$TP" 2>/dev/null || true; wait "$TP" 2>/dev/null || true; }
	sysctl -qw kernel.bpf_stats_enabled=0 || true
	rmdir "$CGROOT/$W" "$CGROOT/$E" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

printf 'void _start(void) { __asm__ volatile("mov $60, %%eax\\n xor %%edi, %%edi\\n syscall"); }\n' >"$work/exec.c"
gcc -O2 -static -nostdlib -o "$work/exe" "$work/exec.c"
# The interpreter itself: a pyenv shim would exec helpers in the cgroup.
PYTHON=$(python3 -c 'import os, sys; print(os.path.realpath(sys.executable))')
DPORT=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/load.py" <<'PY'
import os, socket, struct, subprocess, sys
what, n, exe, dport = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
if what == "dns":
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    q = struct.pack(">HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\x01x\x04test\x00" + struct.pack(">HH", 1, 1)
    for _ in range(n):
        u.sendto(q, ("127.0.0.1", dport))
    sys.exit(0)
for _ in range(n):
    subprocess.run([exe])
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(1024)
for _ in range(n):
    c = socket.create_connection(l.getsockname()); s, _ = l.accept(); c.close(); s.close()
PY

load() { # proc|dns: the workload, in its cgroup
	sh -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' sh "$CGROOT/$W" \
		"$PYTHON" "$work/load.py" "$1" "$N" "$work/exe" "$DPORT"
}

run() { # scope-yaml -> "exec_ns tcp_ns dns_ns"
	cat >"$work/tapio.yaml" <<Y
probes:
$1
  process: { enabled: true }
  network: { enabled: true }
  dns: { enabled: true, ports: [$DPORT] }
  security: { enabled: false }
  xdp: { enabled: false }
  lsm: { enabled: false }
  kernel: { enabled: false }
  tc: { enabled: false }
  systemd: { enabled: false }
  etcd: { enabled: false }
  netns: { enabled: false }
exporters:
  stdout: {}
Y
	TAPIO_LOG=info "$TAPIO" run --config "$work/tapio.yaml" >/dev/null 2>"$work/tapio.err" &
	TP=$!
	wait_for "$work/tapio.err" "tapio ready"
	sysctl -qw kernel.bpf_stats_enabled=1
	local e t d
	load proc
	e=$(prog_ns tapio_exec_btf | cut -d' ' -f1)
	t=$(prog_ns tapio_tcp_state | cut -d' ' -f1)
	sysctl -qw kernel.bpf_stats_enabled=0
	# DNS alone, so the egress program's runs are mostly the queries.
	sysctl -qw kernel.bpf_stats_enabled=1
	load dns
	d=$(prog_ns tapio_dns_egres | cut -d' ' -f1)
	sysctl -qw kernel.bpf_stats_enabled=0
	kill -TERM "$TP"
	wait "$TP" 2>/dev/null || true
	TP=
	echo "$e $t $d"
}

echo "scope_overhead: N=$N of each (exec, connect, DNS query) x RUNS=$RUNS; $(uptime | sed 's/.*load/load/')"
for mode in none in out; do : >"$work/$mode"; done
for _ in $(seq 1 "$RUNS"); do
	run "" >>"$work/none"
	run "  scope: { cgroup: $W }" >>"$work/in"
	run "  scope: { cgroup: $E }" >>"$work/out"
done
printf '\n| scope | exec ns/run | tcp state ns/run | dns egress ns/run |\n|---|---|---|---|\n'
for mode in none in out; do
	printf '| %s | %s | %s | %s |\n' "$mode" \
		"$(cut -d' ' -f1 "$work/$mode" | median)" \
		"$(cut -d' ' -f2 "$work/$mode" | median)" \
		"$(cut -d' ' -f3 "$work/$mode" | median)"
done
echo "(medians of $RUNS runs; out = every event checked and left out before the reserve)"
