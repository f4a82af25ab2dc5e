#!/usr/bin/env bash
# What capture_records runs while the probes are attached: a few of each
# kind of event the probes record, on loopback only (198.18.0.0/15 and
# 2001:db8::/32 are never dialled here). dnsmasq answers on 127.0.0.1:53
# when the port is free (the dns probe watches port 53).
set -u
/bin/true; /bin/false; /bin/echo seed with some arguments > /dev/null
sh -c 'kill -9 $$'; sh -c 'exit 3'
( sleep 0.01 & wait )
# TCP: refused, and accepted then closed, over v4 and v6.
python3 - <<'PY'
import socket
for fam, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
    l = socket.socket(fam); l.bind((host, 0)); l.listen(1)
    c = socket.socket(fam); c.connect(l.getsockname()[:2]); s, _ = l.accept(); c.close(); s.close(); l.close()
    c = socket.socket(fam)
    try: c.connect((host, 1))
    except OSError: pass
    c.close()
PY
# DNS over UDP and TCP.
pid=""
if ! ss -lun | grep -q '127.0.0.1:53 '; then
    dnsmasq --no-daemon --conf-file=/dev/null --no-resolv --no-hosts --port=53 --listen-address=127.0.0.1 \
        --bind-interfaces --address=/a.example.test/198.18.0.1 --cname=www.example.test,a.example.test \
        --mx-host=example.test,mail.example.test,10 --txt-record=example.test,"v=spf1 -all" --local=/example.test/ &
    pid=$!
    sleep 0.5
fi
for q in "a.example.test A" "www.example.test A" "example.test MX" "example.test TXT" "nope.example.test AAAA"; do
    dig @127.0.0.1 +tries=1 +time=1 $q > /dev/null
done
dig @127.0.0.1 +tcp +tries=1 +time=1 www.example.test A > /dev/null
[ -n "$pid" ] && kill "$pid"
# Security-relevant events: credential changes, an io_uring.
python3 - <<'PY'
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
params = ctypes.create_string_buffer(120)
fd = libc.syscall(425, 4, params)  # io_uring_setup
if fd >= 0: os.close(fd)
if os.fork() == 0:
    os.setgid(65534); os.setuid(65534); os._exit(0)
os.wait()
PY
true
