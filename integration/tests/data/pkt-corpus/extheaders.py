#!/usr/bin/env python3
"""IPv6 traffic with extension headers the kernel builds itself: UDP and a
TCP connect with hop-by-hop and destination-options headers (PadN
options), sent from the namespace this runs in to the address given."""
import socket
import sys

dst = sys.argv[1]
IPV6_HOPOPTS, IPV6_DSTOPTS = 54, 59
# next header (kernel fills), length 0 (8 bytes), PadN of 4 bytes
padn8 = bytes([0, 0, 1, 4, 0, 0, 0, 0])
# length 1 (16 bytes): PadN of 12 bytes
padn16 = bytes([0, 1, 1, 12]) + bytes(12)
for opts in ((padn8, None), (None, padn8), (padn8, padn16)):
    u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    if opts[0]:
        u.setsockopt(socket.IPPROTO_IPV6, IPV6_HOPOPTS, opts[0])
    if opts[1]:
        u.setsockopt(socket.IPPROTO_IPV6, IPV6_DSTOPTS, opts[1])
    u.sendto(b"ext-header probe", (dst, 9))
    u.close()
    t = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    t.settimeout(2)
    if opts[1]:
        t.setsockopt(socket.IPPROTO_IPV6, IPV6_DSTOPTS, opts[1])
    if opts[0]:
        t.setsockopt(socket.IPPROTO_IPV6, IPV6_HOPOPTS, opts[0])
    try:
        t.connect((dst, 8080))
        t.sendall(b"GET /ext HTTP/1.1\r\nHost: fuzz.test\r\n\r\n")
        t.recv(4096)
    except OSError:
        pass
    t.close()
