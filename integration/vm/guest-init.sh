#!/bin/busybox sh
# /init of the test guest: mount what Tapio needs, run it against real
# workloads, print CHECK lines for integration/vm/run.sh, power off.
/bin/busybox --install -s /bin
# The initramfs root comes from mktemp -d (0700): let other users (su to
# nobody) reach /bin.
chmod 755 /
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
# Configs go in a private directory: Tapio refuses one in a world-writable
# directory such as /tmp (others could swap the policy).
mkdir -m 0700 /tmp/cfg
mkdir -p /sys/fs/cgroup
mount -t cgroup2 cgroup2 /sys/fs/cgroup
ip link set lo up
ip addr add 198.18.0.1/32 dev lo
# Credential and capability records in $1, CHECK lines prefixed "$2".
# Bodies are "comm (pid) syscall: uid a→b ...": one record each, precisely.
cred_checks() {
	grep -q '"stringValue":"su ([0-9]*) setuid: uid 0' $1 && echo "CHECK $2credentials su setuid"
	# (busybox may run the applet without exec: the comm can be sh.)
	if grep -q '"stringValue":"[a-z]* ([0-9]*) unshare: uid 65534[^"]*gained [^"]*CAP_SYS_ADMIN' $1; then
		echo "CHECK $2credentials unshare gained capabilities"
	else
		grep -o '"stringValue":"[^"]*: uid [^"]*"' $1 | head -20
	fi
	grep -q '"stringValue":"commit_creds"' $1 && echo "CHECK $2credentials via commit_creds"
	grep -q '"stringValue":"chown ([0-9]*) used CAP_CHOWN (granted)"' $1 &&
		echo "CHECK $2capability use CAP_CHOWN"
}
# `tapio run --config $1` with stdout to $2, stderr to $3, in the
# background as $TP; returns once it is ready (at most 120 s).
start_tapio() {
	/tapio run --config $1 >$2 2>$3 &
	TP=$!
	i=0
	while ! grep -q "tapio ready" $3; do
		i=$((i + 1))
		[ $i -gt 600 ] && break
		sleep 0.2
	done
}
cred_work() {
	su -s /bin/true nobody
	su -s /bin/sh nobody -c 'unshare -U true'
	echo x >/tmp/cap-owned
	chown 1000 /tmp/cap-owned
}

# Kernel command-line words the kernel does not know become our
# environment: tapio_mode=bench runs the connect benchmark instead.
if [ "$tapio_mode" = bench ]; then
	sysctl -w kernel.bpf_stats_enabled=1 >/dev/null
	nc -lk -p 8080 -e true >/dev/null 2>&1 &
	N=400
	load() { # prints wall ms of N connects
		s=$(cut -d' ' -f1 /proc/uptime)
		i=0
		while [ $i -lt $N ]; do nc 127.0.0.1 8080 </dev/null >/dev/null 2>&1; i=$((i + 1)); done
		e=$(cut -d' ' -f1 /proc/uptime)
		echo "$s $e" | awk '{printf "%d", ($2 - $1) * 1000}'
	}
	# Sum run_time_ns/run_cnt over one process's BPF programs (fdinfo).
	prog_ns() {
		cat /proc/$1/fdinfo/* 2>/dev/null | awk '/^run_time_ns/ {t += $2} /^run_cnt/ {c += $2} END {if (c) printf "%d ns x %d", t / c, c; else print "n/a"}'
	}
	cpu_ms() { awk '{print ($14 + $15) * 10}' /proc/$1/stat; }
	load >/dev/null
	load >/dev/null
	echo "BENCH alone_ms $(load)"
	printf 'probes: { process: { enabled: false }, dns: { enabled: false } }\nexporters: { stdout: {} }\n' >/tmp/cfg/bench.yaml
	/tapio run --config /tmp/cfg/bench.yaml >/tmp/out.json 2>/tmp/err.txt &
	TP=$!
	while ! grep -q "tapio ready" /tmp/err.txt; do sleep 0.2; done
	c0=$(cpu_ms $TP)
	ms=$(load)
	line="BENCH tapio_ms $ms cpu_ms $(($(cpu_ms $TP) - c0)) kernel $(prog_ns $TP)"
	kill -INT $TP; wait $TP
	echo "$line spans $(grep -o '"name":"tcp.connect"' /tmp/out.json | wc -l)"
	tcpconnlat >/tmp/tcl.txt 2>&1 &
	TC=$!
	sleep 3
	c0=$(cpu_ms $TC)
	ms=$(load)
	line="BENCH tcpconnlat_ms $ms cpu_ms $(($(cpu_ms $TC) - c0)) kernel $(prog_ns $TC)"
	kill -INT $TC; wait $TC
	echo "$line lines $(($(wc -l </tmp/tcl.txt) - 1))"
	# BPF LSM: open()+close() of one file with no program, then with 1, 100
	# and 10,000 file_open rules on other files (the lookups miss, the
	# common case). Kernel ns from the LSM programs' fdinfo (prog_type 29).
	lsm_ns() {
		for f in /proc/$1/fdinfo/*; do
			awk '/^prog_type:/ {t = $2} /^run_time_ns/ {r = $2} /^run_cnt/ {c = $2} END {if (t == 29) print r, c}' "$f" 2>/dev/null
		done | awk '{r += $1; c += $2} END {if (c) printf "%d ns x %d", r / c, c; else print "n/a"}'
	}
	mkdir -p /tmp/rules
	i=0
	while [ $i -lt 10000 ]; do : >/tmp/rules/f$i; i=$((i + 1)); done
	echo x >/tmp/target
	M=20000
	openloop $M /tmp/target >/dev/null
	echo "BENCH lsm_open none ns $(openloop $M /tmp/target)"
	for n in 1 100 10000; do
		{
			printf 'exporters: { stdout: {} }\nprobes:\n  process: { enabled: false }\n  network: { enabled: false }\n  dns: { enabled: false }\n  security: { enabled: false }\n  lsm:\n    policy:\n      rules:\n'
			i=0
			while [ $i -lt $n ]; do
				printf '        - { name: r%d, hook: file_open, action: deny, match: { path: /tmp/rules/f%d } }\n' $i $i
				i=$((i + 1))
			done
		} >/tmp/cfg/lsm$n.yaml
		/tapio run --config /tmp/cfg/lsm$n.yaml >/dev/null 2>/tmp/lsmerr.txt &
		TP=$!
		while ! grep -q "tapio ready" /tmp/lsmerr.txt; do sleep 0.2; done
		echo "BENCH lsm_open rules $n ns $(openloop $M /tmp/target) kernel $(lsm_ns $TP)"
		kill -INT $TP
		wait $TP
	done
	echo "BENCH lsm_open none_again ns $(openloop $M /tmp/target)"
	poweroff -f
fi

echo "=== probes begin"
/tapio probes
echo "=== probes end"

dnsmasq --no-resolv --no-hosts --listen-address=127.0.0.1 --bind-interfaces \
	--host-record=www.tapio.test,198.18.0.10 --user=root --pid-file=/tmp/dnsmasq.pid
nc -l -p 8080 -e cat >/dev/null 2>&1 &

# XDP: a veth pair, one end in a network namespace of its own
# (198.18.3.2), the filter on the other (198.18.3.1) blocking it. Busybox
# names the peer veth0.
for m in veth sch_ingress cls_bpf; do insmod /lib/modules/$(uname -r)/$m.ko 2>/dev/null; done
unshare -n sleep 600 &
NSP=$!
sleep 0.3
ip link add tva type veth
ip link set veth0 netns $NSP
ip addr add 198.18.3.1/24 dev tva
ip link set tva up
nsenter -t $NSP -n ip link set lo up
nsenter -t $NSP -n ip addr add 198.18.3.2/24 dev veth0
nsenter -t $NSP -n ip link set veth0 up
nsenter -t $NSP -n ping -c 1 -W 2 198.18.3.1 >/dev/null 2>&1 && echo "CHECK veth reachable before the filter"

# BPF LSM enforcement: a file nobody may open, a directory nobody may
# exec from, and no module loading.
echo secret >/tmp/lsm-secret
echo public >/tmp/lsm-public
mkdir -p /tmp/lsm-denied
cp /bin/busybox /tmp/lsm-denied/true
mkdir -p /tmp/lsm-protected
cp /bin/busybox /tmp/lsm-protected/sleep
# file_modify: a directory whose files may be written but not truncated,
# renamed (from or onto), removed, chmod'ed or chown'ed; a file whose
# chmod is audited; a file named by inode and device that nobody may open
# for writing.
mkdir -p /tmp/lsm-guarded
echo keep >/tmp/lsm-guarded/a
echo x >/tmp/lsm-scratch
echo x >/tmp/lsm-audited
echo x >/tmp/lsm-other
echo x >/tmp/lsm-inode
INO=$(stat -c %i /tmp/lsm-inode)
D=$(stat -c %d /tmp/lsm-inode)
FSDEV="$(((D >> 8) & 0xfff)):$(((D & 0xff) | ((D >> 12) & 0xfff00)))"
# container_id: a file only one container may not open; the container's
# cgroup is made after Tapio applied the policy.
CID=3f2b9c1d4e5f60718293a4b5c6d7e8f90112233445566778899aabbccddeeff0
echo x >/tmp/lsm-ct
cat >/tmp/cfg/tapio.yaml <<Y
pipeline:
  logs: { schedule_delay: 200ms }
  traces: { schedule_delay: 200ms }
  metrics: { export_interval: 500ms }
probes:
  security: { capabilities: true }
  xdp:
    interfaces: [tva]
    policy: { block: [198.18.3.2/32] }
  tc:
    interfaces: [tva]
  lsm:
    policy:
      rules:
        - { name: no-secret, hook: file_open, action: deny, match: { path: /tmp/lsm-secret } }
        - { name: no-exec-denied, hook: exec, action: deny, match: { path_prefix: /tmp/lsm-denied } }
        - { name: no-modules, hook: module_load, action: deny, match: { comm: insmod } }
        - { name: audit-module-request, hook: module_load, action: audit, match: { comm: mount } }
        - { name: no-port-9, hook: connect, action: deny, match: { address: 127.0.0.1/32, port: 9 } }
        - { name: no-ptrace, hook: ptrace, action: deny, match: { path_prefix: /tmp/lsm-protected } }
        - { name: guard-dir, hook: file_modify, action: deny, match: { path_prefix: /tmp/lsm-guarded, operations: [truncate, rename, unlink, chmod, chown] } }
        - { name: audit-chmod, hook: file_modify, action: audit, match: { path: /tmp/lsm-audited, operations: [chmod] } }
        - { name: no-ct-open, hook: file_open, action: deny, match: { path: /tmp/lsm-ct, container_id: $CID } }
        - { name: no-write-inode, hook: file_modify, action: deny, match: { inode: $INO, device: "$FSDEV", operations: [write] } }
Y
start_tapio /tmp/cfg/tapio.yaml /tmp/out.json /tmp/err.txt
grep "tapio ready" /tmp/err.txt && echo "CHECK tapio ready"
grep -E "WARN|ERROR" /tmp/err.txt

sh -c 'exit 7'
echo hi | nc 127.0.0.1 8080 >/dev/null 2>&1
nc 127.0.0.1 1 </dev/null >/dev/null 2>&1
nslookup www.tapio.test 127.0.0.1 >/dev/null 2>&1
nsenter -t $NSP -n ping -c 3 -W 1 198.18.3.1 >/dev/null 2>&1 || echo "CHECK xdp blocked ping"
# tc: DNS queries leave through the classified veth (the answers would be
# blocked by the XDP filter; the queries are what is counted here).
nslookup -timeout=1 tc.tapio.test 198.18.3.2 >/dev/null 2>&1
# security probe: a module from this kernel's own package, and a
# credential change (busybox su drops root to nobody).
# The module rule denies it; the security probe still reports the attempt.
insmod "/lib/modules/$(uname -r)/crc7.ko" 2>/dev/null || echo "CHECK lsm module_load denied"
cat /tmp/lsm-secret >/dev/null 2>&1 || echo "CHECK lsm file_open denied"
cat /tmp/lsm-public >/dev/null 2>&1 && echo "CHECK lsm other file opens"
/tmp/lsm-denied/true 2>/dev/null || echo "CHECK lsm exec denied"
nc 127.0.0.1 9 </dev/null >/dev/null 2>&1 || echo "CHECK lsm connect denied"
# Both outlive the checks (killed below): an exited target is refused by
# ptrace itself (EPERM from a zombie), whatever the rule says.
/tmp/lsm-protected/sleep 600 &
PROT=$!
sleep 600 &
OTHER=$!
[ "$(ptrace_attach $PROT)" = EPERM ] && echo "CHECK lsm ptrace denied"
[ "$(ptrace_attach $OTHER)" = attached ] && echo "CHECK lsm ptrace of another allowed"
kill $PROT $OTHER
# file_modify rules.
echo more >>/tmp/lsm-guarded/a 2>/dev/null && echo "CHECK lsm file_modify write allowed by operations"
truncate -s 0 /tmp/lsm-guarded/a 2>/dev/null || echo "CHECK lsm file_modify truncate denied"
rm -f /tmp/lsm-guarded/a 2>/dev/null || echo "CHECK lsm file_modify unlink denied"
mv /tmp/lsm-guarded/a /tmp/lsm-moved 2>/dev/null || echo "CHECK lsm file_modify rename denied"
mv /tmp/lsm-scratch /tmp/lsm-guarded/a 2>/dev/null || echo "CHECK lsm file_modify rename onto denied"
chmod 600 /tmp/lsm-guarded/a 2>/dev/null || echo "CHECK lsm file_modify chmod denied"
chown 65534 /tmp/lsm-guarded/a 2>/dev/null || echo "CHECK lsm file_modify chown denied"
[ "$(cat /tmp/lsm-guarded/a)" = "keep
more" ] && echo "CHECK lsm file_modify file intact"
chmod 600 /tmp/lsm-audited && echo "CHECK lsm file_modify audited chmod allowed"
rm /tmp/lsm-other && echo "CHECK lsm file_modify other file removable"
echo y >/tmp/lsm-inode 2>/dev/null || echo "CHECK lsm file_modify inode write denied"
cat /tmp/lsm-inode >/dev/null && echo "CHECK lsm file_modify inode read allowed"
mkdir /sys/fs/cgroup/docker-$CID.scope
sh -c "echo \$\$ >/sys/fs/cgroup/docker-$CID.scope/cgroup.procs; cat /tmp/lsm-ct" >/dev/null 2>&1 ||
	echo "CHECK lsm container_id denied in a container made later"
cat /tmp/lsm-ct >/dev/null && echo "CHECK lsm container_id others allowed"
# request_module: an unknown filesystem type makes the kernel ask
# modprobe for fs-tapiofs (audited by a module_load rule, then seen by the
# security probe's module_request tracepoint).
mkdir -p /tmp/mnt
mount -t tapiofs none /tmp/mnt 2>/dev/null
# kernel probe: an OOM kill inside a 32 MiB memory cgroup (dd's 64 MiB
# buffer, filled from /dev/zero, cannot fit).
echo +memory >/sys/fs/cgroup/cgroup.subtree_control
mkdir /sys/fs/cgroup/tapio-oom
echo 32M >/sys/fs/cgroup/tapio-oom/memory.max
echo 0 >/sys/fs/cgroup/tapio-oom/memory.swap.max 2>/dev/null
sh -c 'echo $$ >/sys/fs/cgroup/tapio-oom/cgroup.procs; exec dd if=/dev/zero of=/dev/null bs=64M count=1' 2>/dev/null
# Credentials through commit_creds: su drops root (setgid/setuid), and an
# unprivileged user namespace gains capabilities (unshare: no set*id/exec
# syscall pair sees that). Capability use: chown to another uid.
cred_work
sleep 2
kill -INT $TP
wait $TP

for e in process.exec process.exit process.fork network.connection.close kernel.oom_kill; do
	grep -q "\"eventName\":\"$e\"" /tmp/out.json && echo "CHECK eventName $e"
done
grep -q '"tapio.xdp.packets"' /tmp/out.json && grep -q '"stringValue":"blocklist"' /tmp/out.json &&
	echo "CHECK metric tapio.xdp.packets blocklist"
grep -q '"tapio.tc.packets"' /tmp/out.json && grep -q '"stringValue":"dns"' /tmp/out.json &&
	echo "CHECK metric tapio.tc.packets dns"
kill $NSP
grep '"eventName":"security.module.load"' /tmp/out.json | grep -q crc7 &&
	echo "CHECK eventName security.module.load crc7"
for r in no-secret no-exec-denied no-modules no-port-9 no-ptrace guard-dir audit-chmod no-write-inode audit-module-request no-ct-open; do
	grep '"eventName":"security.policy_decision"' /tmp/out.json | grep -q "\"$r\"" &&
		echo "CHECK decision $r"
done
grep -q '"eventName":"security.credentials.change"' /tmp/out.json &&
	echo "CHECK eventName security.credentials.change"
cred_checks /tmp/out.json ""
grep -q '"stringValue":"mount ([0-9]*) made the kernel request module fs-tapiofs"' /tmp/out.json &&
	echo "CHECK eventName security.module.request fs-tapiofs"
grep -q '"stringValue":"audited module_load (request_module) by mount' /tmp/out.json &&
	echo "CHECK lsm module request audited"
for op in truncate unlink rename chmod chown; do
	grep -q "\"stringValue\":\"denied $op of inode [0-9]* by [a-z]* (pid [0-9]*): rule guard-dir" /tmp/out.json &&
		echo "CHECK decision guard-dir $op"
done
for s in tcp.connect dns.query; do
	grep -q "\"name\":\"$s\"" /tmp/out.json && echo "CHECK span $s"
done
tail -5 /tmp/err.txt

# The kprobe variant, for real: the same credential and capability work
# under `attach: kprobe` (kprobe/commit_creds, kprobe+kretprobe/cap_capable).
printf 'probes:\n  process: { enabled: false }\n  network: { enabled: false }\n  dns: { enabled: false }\n  security: { attach: kprobe, capabilities: true }\nexporters: { stdout: {} }\npipeline: { logs: { schedule_delay: 200ms } }\n' >/tmp/cfg/kprobe.yaml
start_tapio /tmp/cfg/kprobe.yaml /tmp/kp.json /tmp/kperr.txt
grep "tapio ready" /tmp/kperr.txt | grep -q "security=kprobe+tp_btf" && echo "CHECK kprobe security attached"
cred_work
sleep 2
kill -INT $TP
wait $TP
cred_checks /tmp/kp.json "kprobe "
grep -E "WARN|ERROR" /tmp/kperr.txt
poweroff -f
