#!/usr/bin/env python3
"""A known io_uring workload for the kernel probe's tests, on raw syscalls.

Python has no io_uring, and liburing's prep helpers are header-only, so
this sets up a ring with io_uring_setup(2), maps it, and submits exactly:
  NOPS    IORING_OP_NOP
  WRITES  IORING_OP_WRITE of 4 KiB each to PATH
  1       IORING_OP_READ on a closed descriptor (fails with EBADF)
Prints `pid=<pid> ring_fd=<fd> nop=<ok> write=<ok> read_err=<errno>` once
every completion is reaped, then waits for a line on stdin (so the test
reads the counters while the ring still exists) and exits.

With `sqpoll` the ring is made with IORING_SETUP_SQPOLL: a kernel thread
takes the submissions, and no syscall carries them.

  io_uring_ops.py PATH NOPS WRITES [sqpoll]
"""
import ctypes
import mmap
import os
import struct
import sys

SYS_IO_URING_SETUP = 425
SYS_IO_URING_ENTER = 426
IORING_ENTER_GETEVENTS = 1
IORING_ENTER_SQ_WAKEUP = 2
IORING_SETUP_SQPOLL = 2
IORING_OFF_SQ_RING = 0
IORING_OFF_CQ_RING = 0x8000000
IORING_OFF_SQES = 0x10000000
OP_NOP, OP_READ, OP_WRITE = 0, 22, 23
ENTRIES = 64

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def sys_call(*args):
    r = libc.syscall(*args)
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return r


class Ring:
    def __init__(self, entries, sqpoll):
        params = ctypes.create_string_buffer(120)
        self.enter_flags = IORING_ENTER_GETEVENTS
        if sqpoll:
            struct.pack_into("I", params, 8, IORING_SETUP_SQPOLL)
            # The poller sleeps when idle; waking it when it does not is
            # harmless.
            self.enter_flags |= IORING_ENTER_SQ_WAKEUP
        self.fd = sys_call(SYS_IO_URING_SETUP, ctypes.c_uint(entries), params)
        p = params.raw
        self.sq_entries, self.cq_entries = struct.unpack_from("II", p, 0)
        # io_sqring_offsets at 40, io_cqring_offsets at 80.
        sq = struct.unpack_from("IIIIIIII", p, 40)
        cq = struct.unpack_from("IIIIIIII", p, 80)
        self.sq_head, self.sq_tail, self.sq_mask, _, _, _, self.sq_array, _ = sq
        self.cq_head, self.cq_tail, self.cq_mask, _, _, self.cq_cqes, _, _ = cq
        self.sq = mmap.mmap(self.fd, self.sq_array + self.sq_entries * 4,
                            offset=IORING_OFF_SQ_RING)
        self.cq = mmap.mmap(self.fd, self.cq_cqes + self.cq_entries * 16,
                            offset=IORING_OFF_CQ_RING)
        self.sqes = mmap.mmap(self.fd, self.sq_entries * 64, offset=IORING_OFF_SQES)
        # The offsets name where the masks live; read the masks themselves.
        self.sq_mask = self.u32(self.sq, self.sq_mask)
        self.cq_mask = self.u32(self.cq, self.cq_mask)

    def u32(self, m, off):
        return struct.unpack_from("I", m, off)[0]

    def submit_and_wait(self, sqes):
        """Queue sqes (opcode, fd, addr, len, off, user_data), submit them,
        and return their completions as {user_data: res}."""
        tail = self.u32(self.sq, self.sq_tail)
        for i, (op, fd, addr, length, off, ud) in enumerate(sqes):
            idx = (tail + i) & self.sq_mask
            sqe = bytearray(64)
            struct.pack_into("BBHiQQII", sqe, 0, op, 0, 0, fd, off, addr, length, 0)
            struct.pack_into("Q", sqe, 32, ud)
            self.sqes[idx * 64:(idx + 1) * 64] = bytes(sqe)
            struct.pack_into("I", self.sq, self.sq_array + idx * 4, idx)
        struct.pack_into("I", self.sq, self.sq_tail, (tail + len(sqes)) & 0xFFFFFFFF)
        sys_call(SYS_IO_URING_ENTER, self.fd, len(sqes), len(sqes),
                 self.enter_flags, None, 0)
        got = {}
        while len(got) < len(sqes):
            head = self.u32(self.cq, self.cq_head)
            tail = self.u32(self.cq, self.cq_tail)
            if head == tail:
                sys_call(SYS_IO_URING_ENTER, self.fd, 0, 1, self.enter_flags, None, 0)
                continue
            while head != tail:
                off = self.cq_cqes + (head & self.cq_mask) * 16
                ud, res, _ = struct.unpack_from("QiI", self.cq, off)
                got[ud] = res
                head = (head + 1) & 0xFFFFFFFF
            struct.pack_into("I", self.cq, self.cq_head, head)
        return got


def main():
    path, nops, writes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    ring = Ring(ENTRIES, sys.argv[4:] == ["sqpoll"])
    out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    buf = ctypes.create_string_buffer(b"t" * 4096, 4096)
    addr = ctypes.addressof(buf)
    closed = os.open("/dev/null", os.O_RDONLY)
    os.close(closed)
    plan = [(OP_NOP, -1, 0, 0, 0, 1000 + i) for i in range(nops)]
    plan += [(OP_WRITE, out, addr, 4096, i * 4096, 2000 + i) for i in range(writes)]
    plan += [(OP_READ, closed, addr, 4096, 0, 3000)]
    res = {}
    for start in range(0, len(plan), ring.sq_entries // 2):
        res.update(ring.submit_and_wait(plan[start:start + ring.sq_entries // 2]))
    nop_ok = sum(1 for i in range(nops) if res.get(1000 + i) == 0)
    write_ok = sum(1 for i in range(writes) if res.get(2000 + i) == 4096)
    print(f"pid={os.getpid()} ring_fd={ring.fd} nop={nop_ok} write={write_ok} "
          f"read_err={-res.get(3000, 0)}", flush=True)
    sys.stdin.readline()
    os.close(out)


if __name__ == "__main__":
    main()
