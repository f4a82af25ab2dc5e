#!/bin/sh
# Regenerates seeds.pcap, the seed corpus of integration/tests/pktfuzz.rs:
# real traffic between two namespaces made here (198.18.100.0/24,
# 2001:db8:100::/64 on a veth; VLAN-tagged copies of some of it),
# captured on the client's veth. Needs root, python3, dnsmasq, dig, curl,
# openssl. Every namespace and process it makes goes away at the end.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
A=tapio-pfcap-a B=tapio-pfcap-b
pids=""
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null || true; done
	ip netns del $A 2>/dev/null || true
	ip netns del $B 2>/dev/null || true
}
trap cleanup EXIT INT TERM
cleanup
ip netns add $A
ip netns add $B
ip -n $A link set lo up
ip -n $B link set lo up
ip link add pfa netns $A type veth peer name pfb netns $B
inA() { ip netns exec $A "$@"; }
inB() { ip netns exec $B "$@"; }
inA ip addr add 198.18.100.1/24 dev pfa
inB ip addr add 198.18.100.2/24 dev pfb
inA ip -6 addr add 2001:db8:100::1/64 dev pfa nodad
inB ip -6 addr add 2001:db8:100::2/64 dev pfb nodad
inB ip link set pfb up

# Start capturing before the client side comes up: its IPv6 bring-up
# (MLD reports with a hop-by-hop header, neighbour discovery) is wanted.
out="$here/seeds.pcap.tmp"
ip netns exec $A python3 "$here/capture.py" pfa "$out" --seconds 60 --max 1500 &
cap=$!
sleep 0.5
inA ip link set pfa up
sleep 1

ip netns exec $B dnsmasq --no-daemon --no-resolv --no-hosts --bind-interfaces \
	--listen-address=198.18.100.2 --listen-address=2001:db8:100::2 \
	--address=/fuzz.test/198.18.5.5 --address=/fuzz.test/2001:db8:5::5 \
	--pid-file= --log-facility=/dev/null &
pids="$pids $!"
ip netns exec $B python3 -m http.server 8080 --bind :: >/dev/null 2>&1 &
pids="$pids $!"
inB openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=fuzz.test -days 1 \
	-keyout /tmp/pfcap.key -out /tmp/pfcap.crt >/dev/null 2>&1
ip netns exec $B openssl s_server -quiet -accept 8443 -key /tmp/pfcap.key -cert /tmp/pfcap.crt >/dev/null 2>&1 &
pids="$pids $!"
sleep 1

inA ping -c 2 -i 0.2 198.18.100.2 >/dev/null
inA ping -6 -c 2 -i 0.2 2001:db8:100::2 >/dev/null
# Fragments: IPv4 (flags/offset) and IPv6 (fragment header).
inA ping -c 1 -s 3000 198.18.100.2 >/dev/null
inA ping -6 -c 1 -s 3000 2001:db8:100::2 >/dev/null
# DNS over UDP and TCP, both families.
inA dig +time=1 +tries=1 @198.18.100.2 fuzz.test A >/dev/null
inA dig +time=1 +tries=1 @198.18.100.2 fuzz.test AAAA >/dev/null
inA dig +time=1 +tries=1 @2001:db8:100::2 fuzz.test A >/dev/null
inA dig +time=1 +tries=1 +tcp @198.18.100.2 fuzz.test A >/dev/null
inA dig +time=1 +tries=1 @198.18.100.2 nxdomain.invalid A >/dev/null || true
# TCP: HTTP/1.1 both families, a refused port (RST), TLS with SNI, an
# HTTP/2 preface.
inA curl -s -m 2 http://198.18.100.2:8080/ >/dev/null
inA curl -s -m 2 'http://[2001:db8:100::2]:8080/' >/dev/null
inA curl -s -m 2 http://198.18.100.2:81/ >/dev/null || true
inA curl -s -m 2 'http://[2001:db8:100::2]:81/' >/dev/null || true
inA curl -s -m 2 --http2-prior-knowledge http://198.18.100.2:8080/ >/dev/null || true
echo Q | inA timeout 3 openssl s_client -connect 198.18.100.2:8443 -servername fuzz.test >/dev/null 2>&1 || true
# UDP to a closed port: ICMP port unreachable back.
inA sh -c 'echo probe > /dev/udp/198.18.100.2/9' 2>/dev/null || \
	inA python3 -c 'import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"probe", ("198.18.100.2", 9))'
# IPv6 with hop-by-hop and destination-options headers.
inA python3 "$here/extheaders.py" 2001:db8:100::2
# 802.1Q and QinQ (see vlan_inject.py: no VLAN devices on this kernel).
inA python3 "$here/vlan_inject.py" pfa "$out"
sleep 0.5
kill $cap
wait $cap || true
mv "$out" "$here/seeds.pcap"
rm -f /tmp/pfcap.key /tmp/pfcap.crt
ls -l "$here/seeds.pcap"
