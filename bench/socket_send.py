#!/usr/bin/env python3
"""What one 16 KiB write costs the sender in system time over loopback TCP
and over a Unix stream socket, the two ways Tapio can reach a collector on
its own node (exporters.otlp.endpoint http://127.0.0.1:4317 or
unix:///path). A forked reader drains as fast as it can; the sender's
getrusage() system time is divided by the writes. 16 KiB is the HTTP/2 DATA
frame a gRPC receiver allows by default, and h2 writes one frame per writev.
Prints figures only; asserts nothing.

    python3 bench/socket_send.py [WRITES] [ROUNDS]
"""
import os
import resource
import socket
import sys
import tempfile

WRITES = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 3
CHUNK = 16384


def one(kind, sock_dir):
    if kind == "tcp":
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.bind(("127.0.0.1", 0))
        addr = ls.getsockname()
        family = socket.AF_INET
    else:
        addr = os.path.join(sock_dir, "send.sock")
        if os.path.exists(addr):
            os.unlink(addr)
        ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        ls.bind(addr)
        family = socket.AF_UNIX
    ls.listen(1)
    pid = os.fork()
    if pid == 0:
        conn, _ = ls.accept()
        while conn.recv(1 << 20):
            pass
        os._exit(0)
    s = socket.socket(family, socket.SOCK_STREAM)
    s.connect(addr)
    if kind == "tcp":
        # As Tapio's gRPC channel sets it.
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    data = b"x" * CHUNK
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(WRITES):
        s.sendall(data)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    s.close()
    os.waitpid(pid, 0)
    ls.close()
    return (r1.ru_stime - r0.ru_stime) * 1e6 / WRITES


def main():
    with tempfile.TemporaryDirectory() as d:
        res = {"tcp": [], "unix": []}
        for _ in range(ROUNDS):
            for kind in ("tcp", "unix"):
                res[kind].append(one(kind, d))
    print(f"sender system time per {CHUNK}-byte write, {WRITES} writes, {ROUNDS} rounds alternately")
    for kind, label in (("tcp", "loopback TCP (TCP_NODELAY)"), ("unix", "Unix stream socket")):
        v = sorted(res[kind])
        print(f"  {label:28s} median {v[len(v) // 2]:.2f} us  (all: {', '.join(f'{x:.2f}' for x in res[kind])})")
    t, u = sorted(res["tcp"])[ROUNDS // 2], sorted(res["unix"])[ROUNDS // 2]
    if u > 0:
        print(f"  TCP / Unix: {t / u:.1f}x")


main()
