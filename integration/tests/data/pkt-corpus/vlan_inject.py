#!/usr/bin/env python3
"""This kernel has no 802.1Q support, so VLAN frames cannot come from a
VLAN device: re-send frames already captured (read from the pcap being
written) through a packet socket with an 802.1Q tag (VLAN 5) and with
QinQ tags (802.1ad 10, 802.1Q 20), so they are on the wire and captured
like the rest. A TCP SYN, a DNS query, an ICMP echo, an IPv4 fragment and
an ICMPv6 echo, where captured."""
import socket
import struct
import sys

iface, pcap = sys.argv[1], sys.argv[2]
raw = open(pcap, "rb").read()
frames, off = [], 24
while off + 16 <= len(raw):
    _, _, caplen, _ = struct.unpack("<IIII", raw[off : off + 16])
    frames.append(raw[off + 16 : off + 16 + caplen])
    off += 16 + caplen


def kind(f):
    et = f[12:14]
    if et == b"\x08\x00" and len(f) > 34:
        proto, frag = f[23], struct.unpack("!H", f[20:22])[0]
        if frag & 0x1FFF:
            return "frag4"
        if proto == 6 and len(f) > 47 and f[47] == 0x02:
            return "syn4"
        if proto == 17 and len(f) > 37 and f[36:38] == b"\x00\x35":
            return "dns4"
        if proto == 1:
            return "icmp4"
    if et == b"\x86\xdd" and len(f) > 54 and f[20] == 58:
        return "icmp6"
    return None


picked = {}
for f in frames:
    k = kind(f)
    if k and k not in picked and len(f) <= 1400:
        picked[k] = f
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
for f in picked.values():
    s.send(f[:12] + b"\x81\x00\x00\x05" + f[12:])
    s.send(f[:12] + b"\x88\xa8\x00\x0a\x81\x00\x00\x14" + f[12:])
print("vlan frames from:", sorted(picked))
