#!/usr/bin/env python3
"""Clients for integration/tests/tc.rs. Each speaks one protocol to a real
server, then prints the TCP payload bytes it sent and received as the
kernel counted them (TCP_INFO bytes_acked / bytes_received; for UDP the
datagram sizes) and keeps the connection open for HOLD seconds, so nothing
(close_notify, GOAWAY) is sent after the figures were taken.

usage: tc_client.py MODE HOST PORT [ARG]
"""
import errno
import socket
import ssl
import struct
import sys
import time

HOLD = 20


def tcp_info(s, peer_closed=False):
    raw = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 232)
    # struct tcp_info: 8 bytes of u8 fields, 24 u32, then u64 pacing_rate,
    # max_pacing_rate, bytes_acked (offset 120), bytes_received (128).
    acked, received = struct.unpack_from("=QQ", raw, 120)
    # Sequence space, not payload: an active open's bytes_acked includes
    # its SYN, and bytes_received the peer's FIN once it closed.
    return acked - 1, received - (1 if peer_closed else 0)


def report(sent, received):
    print(f"{sent} {received}", flush=True)


def hold(s):
    time.sleep(HOLD)
    s.close()


def read_until(s, marker):
    buf = b""
    while marker not in buf:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf


def http(host, port):
    s = socket.create_connection((host, port))
    s.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    while s.recv(65536):
        pass
    time.sleep(0.3)
    report(*tcp_info(s, peer_closed=True))
    hold(s)


def tls(host, port, sni):
    raw = socket.create_connection((host, port))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    s = ctx.wrap_socket(raw, server_hostname=sni)
    s.sendall(b"hello tapio\n")
    read_until(s, b"\n")
    time.sleep(0.5)
    report(*tcp_info(s))
    time.sleep(HOLD)


def redis(host, port):
    s = socket.create_connection((host, port))
    for cmd in (b"*1\r\n$4\r\nPING\r\n", b"*3\r\n$3\r\nSET\r\n$5\r\ntapio\r\n$2\r\ntc\r\n",
                b"*2\r\n$3\r\nGET\r\n$5\r\ntapio\r\n"):
        s.sendall(cmd)
        read_until(s, b"\r\n")
    time.sleep(0.3)
    report(*tcp_info(s))
    hold(s)


def dns(host, port, name):
    q = struct.pack(">HHHHHH", 0x7a91, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\x00" + struct.pack(">HH", 1, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    s.sendto(q, (host, port))
    resp, _ = s.recvfrom(4096)
    report(len(q), len(resp))


def pg(host, port):
    # Plain TCP, so the application's own byte counts are the payload
    # (TCP_INFO's bytes_received is one high after PostgreSQL's 1-byte
    # SSLRequest answer here).
    s = socket.create_connection((host, port))
    ssl_request = struct.pack(">II", 8, 80877103)
    s.sendall(ssl_request)
    assert s.recv(1) == b"N"
    params = b"user\x00postgres\x00database\x00postgres\x00\x00"
    startup = struct.pack(">II", 8 + len(params), 196608) + params
    s.sendall(startup)
    got = read_until(s, b"Z\x00\x00\x00\x05I")  # ReadyForQuery, idle
    time.sleep(0.3)
    report(len(ssl_request) + len(startup), 1 + len(got))
    hold(s)


def grpc_echo(host, port, calls):
    import grpc
    ch = grpc.insecure_channel(f"{host}:{port}", options=[("grpc.http2.bdp_probe", 0)])
    say = ch.unary_unary("/tapio.Echo/Say")
    for i in range(int(calls)):
        assert say(b"x" * (100 + i)) == b"x" * (100 + i)
    time.sleep(0.5)
    out = __import__("subprocess").run(
        ["ss", "-tinH", "dst", f"{host}:{port}"], capture_output=True, text=True
    ).stdout
    acked = int(out.split("bytes_acked:")[1].split()[0]) - 1 if "bytes_acked:" in out else 0
    received = int(out.split("bytes_received:")[1].split()[0]) if "bytes_received:" in out else 0
    report(acked, received)
    time.sleep(HOLD)
    ch.close()


def grpc_server(host, port):
    import grpc
    from concurrent import futures
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2),
                         options=[("grpc.http2.bdp_probe", 0)])
    handler = grpc.method_handlers_generic_handler(
        "tapio.Echo", {"Say": grpc.unary_unary_rpc_method_handler(lambda req, ctx: req)}
    )
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"{host}:{port}")
    server.start()
    print("ready", flush=True)
    server.wait_for_termination()


def connect_many(host, port, n, pace_ms):
    """n TCP connections, one after the other (pace_ms apart); prints
    ok/failed counts and which server answered (it sends its name)."""
    ok = failed = 0
    seen = {}
    for _ in range(int(n)):
        try:
            s = socket.create_connection((host, port), timeout=3)
            name = s.recv(64).decode().strip()
            seen[name] = seen.get(name, 0) + 1
            ok += 1
            s.close()
        except OSError:
            failed += 1
        time.sleep(float(pace_ms) / 1000)
    print(f"ok={ok} failed={failed} " + " ".join(f"{k}={v}" for k, v in sorted(seen.items())),
          flush=True)


def connect_from_port(host, port, n, src_port):
    """n TCP connections one after the other, all from the same client
    port: each a new flow on the same 4-tuple (the server closes first, so
    its TIME_WAIT accepts the next SYN)."""
    ok = failed = 0
    seen = {}
    for _ in range(int(n)):
        s = None
        try:
            # The last connection's socket may still be closing (LAST_ACK):
            # connect() then fails locally, before any SYN, so retry.
            for attempt in range(50):
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.settimeout(3)
                try:
                    s.bind(("0.0.0.0", int(src_port)))
                    s.connect((host, int(port)))
                    break
                except OSError as e:
                    s.close()
                    if e.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL) or attempt == 49:
                        raise
                    time.sleep(0.1)
            name = s.recv(64).decode().strip()
            seen[name] = seen.get(name, 0) + 1
            ok += 1
        except OSError as e:
            print(f"connect from {src_port}: {e}", file=sys.stderr, flush=True)
            failed += 1
        finally:
            if s is not None:
                s.close()
        time.sleep(0.2)
    print(f"ok={ok} failed={failed} " + " ".join(f"{k}={v}" for k, v in sorted(seen.items())),
          flush=True)


def name_server(host, port, name):
    """Accept forever and send our name: a load-balancer backend."""
    l = socket.socket()
    l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind((host, int(port)))
    l.listen(512)
    print("ready", flush=True)
    while True:
        c, _ = l.accept()
        try:
            c.sendall(name.encode() + b"\n")
        finally:
            c.close()


def udp_blast(host, port, n):
    """Send n datagrams; a udp_sink counts them."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for i in range(int(n)):
        s.sendto(b"%08d" % i, (host, int(port)))
        if i % 50 == 0:
            time.sleep(0.002)
    print("sent", flush=True)


def udp_sink(host, port, seconds):
    """Count datagrams until a line on stdin says the sender is done (then
    drain for half a second), or for `seconds` when no one says so. A sender
    that starts late, as under emulation, is waited for."""
    import select

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    # 4 MiB (SO_RCVBUFFORCE: past rmem_max, the tests run as root): with
    # the default ~200 KiB, a sink starved of CPU by a busy machine drops
    # datagrams of a 500-datagram blast, and the counts are exact.
    s.setsockopt(socket.SOL_SOCKET, 33, 4 << 20)
    s.bind((host, int(port)))
    print("ready", flush=True)
    n = 0
    done = None
    end = time.time() + float(seconds)
    while True:
        now = time.time()
        if (done is not None and now - done >= 0.5) or (done is None and now >= end):
            break
        r, _, _ = select.select([s, sys.stdin], [], [], 0.1)
        if s in r:
            s.recv(64)
            n += 1
            if done is not None:
                done = time.time()
        if sys.stdin in r:
            sys.stdin.readline()
            done = time.time()
    print(n, flush=True)


def sidecar(listen_port, mark):
    """An Envoy-like outbound listener: accept connections REDIRECTed to it,
    read the original destination (SO_ORIGINAL_DST, as Envoy does) and
    proxy to it from a marked socket that the REDIRECT rule skips."""
    import threading
    SO_ORIGINAL_DST = 80
    l = socket.socket()
    l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind(("127.0.0.1", int(listen_port)))
    l.listen(64)
    print("ready", flush=True)

    def pipe(a, b):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                b.sendall(d)
        except OSError:
            pass
        try:
            b.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    while True:
        c, _ = l.accept()
        od = c.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
        port, = struct.unpack_from(">H", od, 2)
        ip = socket.inet_ntoa(od[4:8])
        up = socket.socket()
        up.setsockopt(socket.SOL_SOCKET, 36, int(mark))  # SO_MARK
        up.connect((ip, port))
        threading.Thread(target=pipe, args=(c, up), daemon=True).start()
        threading.Thread(target=pipe, args=(up, c), daemon=True).start()


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    fn = {
        "http": lambda: http(args[0], int(args[1])),
        "tls": lambda: tls(args[0], int(args[1]), args[2]),
        "redis": lambda: redis(args[0], int(args[1])),
        "dns": lambda: dns(args[0], int(args[1]), args[2]),
        "pg": lambda: pg(args[0], int(args[1])),
        "grpc": lambda: grpc_echo(args[0], int(args[1]), args[2]),
        "grpc-server": lambda: grpc_server(args[0], int(args[1])),
        "connect-many": lambda: connect_many(args[0], int(args[1]), args[2], args[3]),
        "connect-from-port": lambda: connect_from_port(args[0], args[1], args[2], args[3]),
        "name-server": lambda: name_server(args[0], args[1], args[2]),
        "udp-blast": lambda: udp_blast(args[0], args[1], args[2]),
        "udp-sink": lambda: udp_sink(args[0], args[1], args[2]),
        "sidecar": lambda: sidecar(args[0], args[1]),
    }[mode]
    fn()
