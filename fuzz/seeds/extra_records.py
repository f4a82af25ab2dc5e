# Run from fuzz/: python3 seeds/extra_records.py
# Seed records for the ring_records kinds capture_records did not record
# (etcd fsync, systemd units, netns/cni, encrypted DNS): laid out from
# shared/include/tapio/events.h by hand, values like a real host's.
import struct, os
out = "seeds/ring_records"
def hdr(kind, pid=4242, comm=b"etcd"):
    return struct.pack("<QQIIIIII16s", 9_000_000_000, 0x1a2b, kind, pid, pid, 1, 0, 0, comm)
def rec(b):
    return struct.pack("<H", len(b)) + b
def cstr(s, n): return s.ljust(n, b"\0")[:n]
# etcd wal fsync (80): 152 bytes
def etcd(dur, ret, syscall, name):
    return hdr(80) + struct.pack("<QQqiI", 8_990_000_000, dur, ret, 7, syscall) + cstr(name, 64)
# unit event (81): 384 bytes
def unit(op, path, uid=77, flags=0, pid=1, exits=0, failed=0, code=0, sig=0):
    state = struct.pack("<QQIIIIIiII", 8_000_000_000, 8_100_000_000 if op != 1 else 0, 0 if op == 1 else 1234,
                        exits, failed, 0, 1234 if failed else 0, code, sig, flags)
    return hdr(81, pid, b"systemd") + state + struct.pack("<QIIHHI", uid, op, flags, len(path), path.count(b"/"), 0) + cstr(path, 256)
# netns create (90): 80 bytes
def netns(via, child):
    return hdr(90, 5000, b"unshare") + struct.pack("<QQII", 4026532999, 4026531840, via, child)
# cni exec (91): 8528 bytes
def cni(env, fn=b"/opt/cni/bin/bridge", flags=0):
    return hdr(91, 6000, b"bridge") + struct.pack("<QIIIHH", 4026531840, flags, len(env), len(env), len(fn), 0) + cstr(fn, 256) + cstr(env, 8192)
# encrypted dns (21): 104 bytes
def enc(kind, port, v6=False):
    if v6:
        s, d, fam = bytes(15) + b"\1", bytes.fromhex("20010db8000000000000000000000053"), 10
    else:
        s, d, fam = bytes([10] + [0]*15)[:4] + bytes(12), bytes([198, 18, 0, 53]) + bytes(12), 2
    return hdr(21, 3000, b"resolved") + s + d + struct.pack("<HHHH", 40000, port, fam, 0) + bytes([kind]) + bytes(7)
def mem(entries):
    return b"".join(struct.pack("<QIQQ", *e) for e in entries)
seeds = {
    "etcd-000": [etcd(150_000_000, 0, 0, b"0000000000000001-0000000000000000.wal")],
    "etcd-001": [etcd(2_000_000_000, -5, 1, b"0000000000000002-0000000000001000.wal")],
    "systemd-sequence": [unit(1, b"/system.slice/tapio-seed.service"), unit(2, b"/system.slice/tapio-seed.service", pid=4321),
                         unit(3, b"/system.slice/tapio-seed.service", exits=3, failed=1, code=1)],
    "systemd-000": [unit(2, b"", flags=4)],
    "systemd-001": [unit(3, b"/user.slice/user-1000.slice/session-3.scope", uid=78, exits=1, sig=9, flags=1)],
    "netns-000": [netns(1, 0)],
    "netns-001": [netns(2, 5001)],
    "cni-000": [cni(b"PATH=/usr/bin\0CNI_COMMAND=ADD\0CNI_CONTAINERID=abc123\0CNI_NETNS=/var/run/netns/cni-1\0CNI_IFNAME=eth0\0CNI_PATH=/opt/cni/bin\0")],
    "cni-001": [cni(b"", flags=4)],
    "dns-encrypted-000": [enc(1, 853)],
    "dns-encrypted-001": [enc(2, 443, v6=True)],
    # Memory-usage map reads (28-byte entries), the same keys growing.
    "memory-sequence": [mem([(0x1a2b, 0, 100, 409_600), (0x1a2c, 1, 50, 3_200)]),
                        mem([(0x1a2b, 0, 300, 1_228_800), (0x1a2c, 1, 50, 3_200), (0x1a2d, 2, 10, 640)])],
}
for name, recs in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(b"".join(rec(r) for r in recs))
