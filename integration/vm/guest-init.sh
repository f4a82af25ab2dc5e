#!/bin/busybox sh
# /init of the test guest: mount what Tapio needs, run it against real
# workloads, print CHECK lines for integration/vm/run.sh, power off.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mkdir -p /sys/fs/cgroup
mount -t cgroup2 cgroup2 /sys/fs/cgroup
ip link set lo up
ip addr add 198.18.0.1/32 dev lo

echo "=== probes begin"
/tapio probes
echo "=== probes end"

dnsmasq --no-resolv --no-hosts --listen-address=127.0.0.1 --bind-interfaces \
	--host-record=www.tapio.test,198.18.0.10 --user=root --pid-file=/tmp/dnsmasq.pid
nc -l -p 8080 -e cat >/dev/null 2>&1 &

cat >/tmp/tapio.yaml <<Y
pipeline:
  logs: { schedule_delay: 200ms }
  traces: { schedule_delay: 200ms }
Y
/tapio run --config /tmp/tapio.yaml >/tmp/out.json 2>/tmp/err.txt &
TP=$!
i=0
while ! grep -q "tapio ready" /tmp/err.txt; do
	i=$((i + 1))
	[ $i -gt 600 ] && break
	sleep 0.2
done
grep "tapio ready" /tmp/err.txt && echo "CHECK tapio ready"
grep -E "WARN|ERROR" /tmp/err.txt

sh -c 'exit 7'
echo hi | nc 127.0.0.1 8080 >/dev/null 2>&1
nc 127.0.0.1 1 </dev/null >/dev/null 2>&1
nslookup www.tapio.test 127.0.0.1 >/dev/null 2>&1
sleep 2
kill -INT $TP
wait $TP

for e in process.exec process.exit process.fork network.connection.close; do
	grep -q "\"eventName\":\"$e\"" /tmp/out.json && echo "CHECK eventName $e"
done
for s in tcp.connect dns.query; do
	grep -q "\"name\":\"$s\"" /tmp/out.json && echo "CHECK span $s"
done
tail -5 /tmp/err.txt
poweroff -f
