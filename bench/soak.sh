#!/usr/bin/env bash
# Soak with a collector outage: DURATION seconds of mixed load with the
# collector stopped for the middle third. Prints the RSS curve (every 10 s),
# the record accounting (records the kernel had to produce = received +
# counted lost + counted dropped, from the generator's own counts), and how
# long export took to resume after the collector came back.
#
#   DURATION=1800 bash bench/soak.sh        # the full soak (30 min, 10 min outage)
#   DURATION=600 bash bench/soak.sh         # a 10-minute run
#
# Chain, all on loopback: load_gen (execs, TCP connects, UDP DNS lookups;
# see bench/sustained_load.sh) plus a loop writing to files under a watched
# directory -> Tapio (process, network, dns, security with watch_paths;
# OTLP/gRPC; retry interval RETRY) -> rotel (PyPI `rotel`) -> otlp_count.
# The collector is stopped with SIGTERM (rotel flushes what it holds; a
# SIGKILLed collector's own buffers are its loss, not Tapio's) and started
# again on the same port. File writes are load only: the security probe
# folds repeated writes by a process into one record per window, so they
# have no exact expected count (and stay outside the scope below, observed:
# the security probe is not scoped).
# load_gen, and only it, runs in a cgroup of its own (tapio-soak-<pid> under
# the cgroup2 mount, removed at the end) that is Tapio's probes.scope, so the
# process, network and dns probes record the generator alone: this script's
# curl and python, Tapio's reconnects and the machine's other processes
# cost no record, no loss and no drop, and the accounting per probe is
# exact: expected = received + tapio.events.lost + tapio.export.dropped.
# Rates: EXEC_RATE, CONNECT_RATE, DNS_RATE, WRITE_RATE per second. KEEP=1
# keeps the work directory.
set -euo pipefail
DURATION=${DURATION:-1800}
EXEC_RATE=${EXEC_RATE:-20}
CONNECT_RATE=${CONNECT_RATE:-300}
DNS_RATE=${DNS_RATE:-300}
WRITE_RATE=${WRITE_RATE:-20}
RETRY=${RETRY:-5s}
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
load_tools # TAPIO, GEN, COUNT, ROTEL
THIRD=$((DURATION / 3))
[ "$THIRD" -ge 30 ] || { echo "DURATION must be at least 90 s"; exit 1; }

work=$(mktemp -d /tmp/tapio-soak.XXXXXX)
CGROOT=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/self/mounts)
[ -n "$CGROOT" ] || { echo "no cgroup v2 mount"; exit 1; }
SCOPE="tapio-soak-$$"
CG="$CGROOT/$SCOPE"
mkdir "$CG"
pids=()
cleanup() {
	# Only what this script started, by pid; SIGTERM first so Tapio detaches.
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	sleep 2
	for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
	for _ in $(seq 1 50); do rmdir "$CG" 2>/dev/null && break; sleep 0.1; done
	if [ -n "${KEEP:-}" ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

EXEC="$work/tapio-load-exec"
printf 'void _start(void) { __asm__ volatile("mov $60, %%eax\\n xor %%edi, %%edi\\n syscall"); }\n' >"$work/exec.c"
gcc -O2 -static -nostdlib -o "$EXEC" "$work/exec.c"
mkdir -p "$work/watched"

read -r RX CTL RG RH PROM CPORT DPORT < <(free_ports 7)

wait_port() {
	for _ in $(seq 1 200); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	echo "port $1 ($2) did not open" >&2
	return 1
}
# Records of ours the receiver holds so far.
ours() {
	curl -s --max-time 5 "http://127.0.0.1:$CTL/counts" | python3 -c '
import json,sys
d=json.load(sys.stdin)
print(sum(v for k,v in d["records"].items() if k.split(" ")[2] != "other"))' 2>/dev/null || echo 0
}
start_rotel() {
	"$ROTEL" start --otlp-grpc-endpoint "127.0.0.1:$RG" --otlp-http-endpoint "127.0.0.1:$RH" \
		--exporter otlp --otlp-exporter-endpoint "http://127.0.0.1:$RX" >>"$work/rotel.log" 2>&1 &
	ROTEL_PID=$!
	pids+=($ROTEL_PID)
	wait_port "$RG" rotel
}

"$COUNT" --grpc "127.0.0.1:$RX" --control "127.0.0.1:$CTL" \
	--match "server.port=$CPORT" --match "server.port=$DPORT" \
	--match "process.executable.name=$(basename "$EXEC")" --match "process.executable.name=$(basename "$GEN")" \
	>"$work/count.json" 2>"$work/count.err" &
pids+=($!)
wait_port "$CTL" otlp_count
start_rotel

cat >"$work/tapio.yaml" <<Y
probes:
  scope: { cgroup: $SCOPE }
  process: { enabled: true }
  network: { enabled: true }
  dns: { enabled: true, ports: [$DPORT], timeout: 2s }
  security: { enabled: true, watch_paths: ["$work/watched"] }
  xdp: { enabled: false }
  lsm: { enabled: false }
  kernel: { enabled: false }
  tc: { enabled: false }
exporters:
  otlp:
    endpoint: "http://127.0.0.1:$RG"
    retry_on_failure: { initial_interval: $RETRY, max_interval: $RETRY }
  prometheus: { endpoint: "127.0.0.1:$PROM" }
pipeline:
  traces: { schedule_delay: 1s }
Y
TAPIO_LOG=info "$TAPIO" run --config "$work/tapio.yaml" >"$work/tapio.out" 2>"$work/tapio.err" &
TP=$!
pids+=($TP)
for _ in $(seq 1 600); do
	grep -q "tapio ready" "$work/tapio.err" 2>/dev/null && break
	kill -0 $TP 2>/dev/null || { echo "tapio exited:"; tail -20 "$work/tapio.err"; exit 1; }
	sleep 0.1
done
grep -q "tapio ready" "$work/tapio.err" || { echo "tapio not ready in 60 s"; exit 1; }
sleep 2

t0=$(date +%s)
# RSS every 10 s, until Tapio is gone or the run (plus drain) is over.
(
	end=$((t0 + DURATION + 300))
	while kill -0 $TP 2>/dev/null && [ "$(date +%s)" -lt $end ]; do
		echo "$(($(date +%s) - t0)) $(awk '/VmRSS/{print $2}' "/proc/$TP/status")" >>"$work/rss"
		sleep 10
	done
) &
pids+=($!)
# File writes under the watched directory, counted.
python3 - "$work/watched" "$WRITE_RATE" "$DURATION" >"$work/writes" <<'PY' &
import os, sys, time
d, rate, dur = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
start, n = time.time(), 0
while time.time() - start < dur:
    with open(os.path.join(d, "f%d" % (n % 16)), "a") as f:
        f.write("x" * 64)
    n += 1
    ahead = start + n / rate - time.time()
    if ahead > 0:
        time.sleep(ahead)
print(n)
PY
pids+=($!)
WP=$!
# --max-seconds: load_gen stops at 300 s unless told otherwise (a bound for
# its bursts), which cut every soak before this flag to its first 300 s.
# Only load_gen in the scope: the shell moves itself into the cgroup and
# becomes load_gen (whose own exec and exit are then two records more).
timeout --signal=INT $((DURATION + 120)) \
	sh -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' sh "$CG" \
	"$GEN" --duration "$DURATION" --max-seconds "$DURATION" --exec-rate "$EXEC_RATE" --connect-rate "$CONNECT_RATE" --dns-rate "$DNS_RATE" \
	--exec-path "$EXEC" --connect-port "$CPORT" --dns-port "$DPORT" >"$work/gen.json" &
GP=$!
pids+=($GP)

echo "soak: ${DURATION}s of load; collector stopped from ${THIRD}s to $((2 * THIRD))s (work: $work)" >&2
sleep "$THIRD"
kill -TERM "$ROTEL_PID"
wait "$ROTEL_PID" 2>/dev/null || true
t_down=$(($(date +%s) - t0))
before=$(ours)
sleep "$THIRD"
t_up=$(($(date +%s) - t0))
start_rotel
# Export resumes: the first growth of what the receiver holds (1 s steps,
# at most 120 s).
resume=none
for i in $(seq 1 120); do
	sleep 1
	now=$(ours)
	if [ "$now" -gt "$before" ]; then resume=$i; break; fi
done
wait $GP || true
wait $WP || true
t_end=$(($(date +%s) - t0))
# Drain: until the receiver's count has not changed for 5 s (at most 400 s:
# a retried batch waits up to the retry interval).
last=-1 same=0
for _ in $(seq 1 400); do
	sleep 1
	now=$(ours)
	if [ "$now" = "$last" ]; then same=$((same + 1)); else same=0; fi
	last=$now
	[ $same -ge 5 ] && break
done
curl -s --max-time 5 "http://127.0.0.1:$PROM/metrics" >"$work/prom"
# What the network probe still tracks in the kernel (its LRU map, and the
# map of connects in progress builds before 2026-12-07 had): with the load
# over and every socket closed, they are empty unless a close was
# missed (an entry left behind) or an entry vanished early (none left, a
# close record short). bpftool cuts names to 15 characters.
bpftool map show -j | python3 -c '
import json, subprocess, sys
for m in json.load(sys.stdin):
    if m.get("name") in ("tapio_tcp_pendi", "tapio_tcp_conns"):
        n = len(json.loads(subprocess.run(["bpftool", "map", "dump", "id", str(m["id"]), "-j"],
                                          capture_output=True, text=True).stdout or "[]"))
        print("%s (map %d): %d entries left" % (m["name"], m["id"], n))' >"$work/maps" 2>&1 || true
sleep 2
curl -s --max-time 5 "http://127.0.0.1:$CTL/counts" >"$work/counts.json"
grep -c "export failed\|retrying" "$work/tapio.err" >"$work/retry_lines" || true

python3 - "$work" "$EXEC" "$GEN" "$CPORT" "$DPORT" "$t_down" "$t_up" "$t_end" "$resume" "$RETRY" "$DURATION" <<'PY'
import json, os, re, sys
work, exe, gen, cport, dport = sys.argv[1:6]
t_down, t_up, t_end = map(int, sys.argv[6:9]); resume, retry, dur = sys.argv[9], sys.argv[10], int(sys.argv[11])
g = json.load(open(f"{work}/gen.json"))
rec = json.load(open(f"{work}/counts.json"))["records"]
writes = open(f"{work}/writes").read().strip() or "?"
def got(signal, name, lab):
    return sum(v for k, v in rec.items() if k.split(" ")[:3] == [signal, name, lab])
prom = {}
for line in open(f"{work}/prom"):
    m = re.match(r'^(tapio_(?:events|export)_\w+)\{([^}]*)\} (\S+)$', line.strip())
    if m:
        prom.setdefault(m.group(1), []).append((dict(re.findall(r'(\w+)="([^"]*)"', m.group(2))), float(m.group(3))))
def by(name, key, **want):
    out = {}
    for a, v in prom.get(name, []):
        if all(a.get(k) == x for k, x in want.items()) and v:
            out[a.get(key, "?")] = out.get(a.get(key, "?"), 0) + int(v)
    return out
E, C, A = g["exec"]["done"], g["connect"]["done"], g["connect"]["accepted"]
Dsent = g["dns"]["sent"]
X, P, G, Q = (f"process.executable.name={os.path.basename(exe)}", f"server.port={cport}",
              f"process.executable.name={os.path.basename(gen)}", f"server.port={dport}")
kinds = {
    # + 2: load_gen's own exec (it is exec'd inside the scope) and exit.
    "exec": (3 * E + 2, got("logs", "process.fork", G) + got("logs", "process.exec", X) + got("logs", "process.exit", X)
             + got("logs", "process.exec", G) + got("logs", "process.exit", G), "process"),
    "connect": (2 * C + A, got("traces", "tcp.connect", P) + got("logs", "network.connection.close", P), "network"),
    "dns": (Dsent, got("traces", "dns.query", Q), "dns"),
}
print(f"\nsoak: {dur} s of load (exec {g['exec']['done']:,}, connect {C:,}, dns {Dsent:,} sent, {writes} file writes); "
      f"collector stopped at {t_down} s, back at {t_up} s; load ended at {t_end} s")
print(f"export resumed {resume} s after the collector came back (retry interval {retry})")
rss = [l.split() for l in open(f"{work}/rss") if len(l.split()) == 2]
print("\nRSS (MiB) every 10 s:")
for i in range(0, len(rss), 10):
    print("  " + "  ".join(f"{int(t):>5}s {int(k) / 1024:6.1f}" for t, k in rss[i:i + 10]))
third = lambda lo, hi: [int(k) / 1024 for t, k in rss if lo <= int(t) < hi]
for name, lo, hi in (("before the outage", 0, t_down), ("outage", t_down, t_up), ("after", t_up, 10**9)):
    v = third(lo, hi)
    if v:
        print(f"  {name}: min {min(v):.1f}, max {max(v):.1f}, last {v[-1]:.1f} MiB")
print("\nPer probe (scope: load_gen's cgroup only), expected = received + lost + dropped + unexplained:")
print("\n| kind (probe) | records expected | received | lost (tapio.events.lost) | dropped (tapio.export.dropped) | unexplained |")
print("|---|---|---|---|---|---|")
exp_t = rec_t = lost_t = drop_t = 0
for k, (exp, got_, probe) in kinds.items():
    lost = by("tapio_events_lost_total", "tapio_reason", tapio_probe=probe)
    l = sum(lost.values())
    if k == "dns":
        l = l / 2  # two packets per lookup, see bench/sustained_load.sh
    drop = by("tapio_export_dropped_total", "tapio_reason", tapio_probe=probe)
    d = sum(drop.values())
    gap = exp - got_ - l - d
    exp_t += exp; rec_t += got_; lost_t += l; drop_t += d
    print(f"| {k} ({probe}) | {exp:,} | {got_:,} | {l:,g} {lost or ''} | {d:,} {drop or ''} | {gap:,g} |")
gap = exp_t - rec_t - lost_t - drop_t
print("\nnetwork probe maps at the end: " + (open(f"{work}/maps").read().strip().replace("\n", "; ") or "none found"))
print(f"\nexpected {exp_t:,} = received {rec_t:,} + lost {lost_t:,g} + dropped at export {drop_t:,} + unexplained {gap:,g}")
other = {s: by("tapio_export_dropped_total", "tapio_probe", tapio_signal=s) for s in ("logs", "traces")}
print(f"(all of Tapio's export drops by signal and probe: {other})")
sent = {s: int(sum(v for a, v in prom.get("tapio_export_sent_total", []) if a.get("tapio_signal") == s)) for s in ("logs", "traces")}
at_rx = {s: sum(v for k, v in rec.items() if k.startswith(s + " ")) for s in ("logs", "traces")}
for s in ("logs", "traces"):
    print(f"{s}: Tapio counted {sent[s]:,} sent (accepted by the collector) by the final scrape; the receiver behind the collector got {at_rx[s]:,}")
PY
