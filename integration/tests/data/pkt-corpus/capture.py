#!/usr/bin/env python3
"""Write every frame seen on one interface to a pcap until SIGTERM or
--seconds pass (at most --max frames).

AF_PACKET hands VLAN tags that the veth offloaded as metadata
(PACKET_AUXDATA), not in the frame; they are put back so the corpus holds
the frames as they were on the wire.
"""
import argparse
import errno
import signal
import socket
import struct
import time

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_AUXDATA = 8
TP_STATUS_VLAN_VALID = 0x10
TP_STATUS_VLAN_TPID_VALID = 0x40

ap = argparse.ArgumentParser()
ap.add_argument("iface")
ap.add_argument("out")
ap.add_argument("--seconds", type=float, default=60)
ap.add_argument("--max", type=int, default=2000)
a = ap.parse_args()

stop = False


def on_term(*_):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_term)
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
s.bind((a.iface, 0))
s.settimeout(0.2)
deadline = time.time() + a.seconds
n = 0
with open(a.out, "wb") as f:
    # pcap: little-endian, v2.4, snaplen 65535, LINKTYPE_ETHERNET
    f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    while not stop and time.time() < deadline and n < a.max:
        try:
            data, anc, _, _ = s.recvmsg(65535, socket.CMSG_SPACE(20))
        except socket.timeout:
            continue
        except OSError as e:
            # The link coming up reports ENETDOWN once.
            if e.errno == errno.ENETDOWN:
                continue
            raise
        for level, kind, payload in anc:
            if level != SOL_PACKET or kind != PACKET_AUXDATA or len(payload) < 20:
                continue
            status, _, _, _, _, tci, tpid = struct.unpack("<IIIHHHH", payload[:20])
            if status & TP_STATUS_VLAN_VALID:
                if not status & TP_STATUS_VLAN_TPID_VALID:
                    tpid = 0x8100
                data = data[:12] + struct.pack("!HH", tpid, tci) + data[12:]
        t = time.time()
        f.write(struct.pack("<IIII", int(t), int((t % 1) * 1e6), len(data), len(data)))
        f.write(data)
        f.flush()
        n += 1
print(f"captured {n} frames")
