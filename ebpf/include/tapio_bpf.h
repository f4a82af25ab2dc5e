/* SPDX-License-Identifier: GPL-2.0-only */
/* Helpers shared by every Tapio BPF program. BPF side only. */
#ifndef TAPIO_BPF_H
#define TAPIO_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

#include "tapio/events.h"

char LICENSE[] SEC("license") = "GPL";

/* Default ring-buffer size; userspace overrides it from config with
 * set_max_entries before load, so this only matters for bpftool users. */
#define TAPIO_RINGBUF_DEFAULT (256 * 1024)

/*
 * Every probe declares its own ring buffer (one per domain, so a flood in
 * one cannot starve another) and its own loss counters with this macro.
 * Map names are constants in exporter/src/maps.rs.
 */
#define TAPIO_PROBE_MAPS()                                                     \
	struct {                                                               \
		__uint(type, BPF_MAP_TYPE_RINGBUF);                            \
		__uint(max_entries, TAPIO_RINGBUF_DEFAULT);                    \
	} tapio_events SEC(".maps");                                           \
	struct {                                                               \
		__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);                       \
		__uint(max_entries, TAPIO_LOST_REASON_MAX);                    \
		__type(key, __u32);                                            \
		__type(value, __u64);                                          \
	} tapio_lost SEC(".maps")

/*
 * clang emits BTF only for types a variable or function mentions; records
 * are written through ringbuf pointers, so without this their layouts
 * would be missing from the object. The pointer sits in a section of its
 * own that no loader turns into a map; tests read the BTF to check that
 * the generated Rust types match the object byte for byte.
 */
#define TAPIO_ABI_BTF(type)                                                    \
	const type *tapio_abi_##type __attribute__((unused, section(".tapio_abi")))

/*
 * Wakeup batching: waking userspace costs an epoll round trip per record,
 * which dominates on exec-heavy nodes. Records are submitted without a
 * wakeup until this many bytes are waiting; userspace also drains on a
 * short timer (probes.<name>.wakeup_interval), so latency stays bounded.
 * Set before load by userspace; 0 wakes on every record.
 */
const volatile __u64 tapio_wakeup_bytes = 0;

/*
 * A forced wakeup is an irq_work, raised by a self-IPI: in a VM a write to
 * the APIC that exits to the hypervisor (~9 us measured here, in the
 * traced task). Forcing on every record above the threshold raised one
 * per record from the crossing until the reader had drained, which it
 * does only once scheduled: ~5,800 IPIs/s at 95k records/s (2.6 % of the
 * machine in native_write_msr). So at most one forced wakeup per
 * TAPIO_FORCE_GAP_NS per object (the time of the last, shared by the
 * CPUs: a race forces twice, harmlessly); above the threshold otherwise
 * flags 0, with which the kernel wakes the reader only when it waits on
 * this very record (stopped at it while it was still being written, so
 * no later record can wake it). A reader is woken within the gap of its
 * ring passing the threshold whenever records keep coming; the interval's
 * drain bounds the rest.
 */
#define TAPIO_FORCE_GAP_NS 1000000
__u64 tapio_forced_ns = 0;

static __always_inline void tapio_submit(void *ringbuf, void *e)
{
	__u64 flags = 0;
	if (tapio_wakeup_bytes) {
		__u64 avail = bpf_ringbuf_query(ringbuf, BPF_RB_AVAIL_DATA);
		if (avail < tapio_wakeup_bytes) {
			flags = BPF_RB_NO_WAKEUP;
		} else {
			__u64 now = bpf_ktime_get_ns();
			if (now - tapio_forced_ns >= TAPIO_FORCE_GAP_NS) {
				tapio_forced_ns = now;
				flags = BPF_RB_FORCE_WAKEUP;
			}
		}
	}
	bpf_ringbuf_submit(e, flags);
}

/* Count one lost event for `reason` on this CPU. Per-CPU, so no atomics. */
static __always_inline void tapio_count_lost(void *lost_map, __u32 reason)
{
	__u64 *n = bpf_map_lookup_elem(lost_map, &reason);
	if (n)
		*n += 1;
}

/* Reserve `size` bytes in `ringbuf`, counting a failure as lost. */
static __always_inline void *tapio_reserve(void *ringbuf, void *lost_map, __u64 size)
{
	void *e = bpf_ringbuf_reserve(ringbuf, size, 0);
	if (!e)
		tapio_count_lost(lost_map, TAPIO_LOST_RINGBUF_FULL);
	return e;
}

/* Fill the common header from `task` (the subject of the event, which is
 * not always current: fork reports the parent, exit may run late). */
/* The struct tapio_hist bucket of a duration in ns: floor(log2). */
static __always_inline __u32 log2_bucket(__u64 v)
{
	__u32 b = 0;
	/* Bounded: at most 64 halvings, unrolled by the compiler. */
#pragma unroll
	for (int i = 0; i < 6; i++) {
		__u32 shift = 32 >> i;
		if (v >= (1ULL << shift)) {
			v >>= shift;
			b += shift;
		}
	}
	return b < TAPIO_HIST_BUCKETS ? b : TAPIO_HIST_BUCKETS - 1;
}

/*
 * TAPIO_RD(btf, p, a, b, ...) reads p->a->b... A pointer the kernel typed
 * (a tp_btf argument, bpf_get_current_task_btf() and what is reached from
 * them) is read with plain loads, which the JIT guards against faults
 * (PROBE_MEM: a NULL or bad pointer reads 0, as a failed probe read
 * does); anything else (a classic tracepoint's fields, an address read
 * from memory) with one bpf_probe_read_kernel call per hop. The helper
 * call costs tens of ns where the load costs one, and the hooks on every
 * packet or socket state change pay it several times a run: it was 5 %
 * of a whole 2-core machine under the sustained-load bench. `btf` is a
 * constant at every call site (the functions are always inlined), so
 * clang drops the other branch and the verifier never sees a plain load
 * from an untyped pointer.
 */
#define TAPIO_RD(btf, src, a, ...)                                             \
	((btf) ? ___arrow(src, a, ##__VA_ARGS__) : BPF_CORE_READ(src, a, ##__VA_ARGS__))

static __always_inline void __tapio_fill_header(struct tapio_event_header *h,
						struct task_struct *task, __u32 kind,
						const int btf)
{
	h->ts_ns = bpf_ktime_get_boot_ns();
	h->kind = kind;
	h->pid = TAPIO_RD(btf, task, tgid);
	h->tid = TAPIO_RD(btf, task, pid);
	h->ppid = TAPIO_RD(btf, task, real_parent, tgid);
	h->uid = TAPIO_RD(btf, task, real_cred, uid.val);
	h->gid = TAPIO_RD(btf, task, real_cred, gid.val);
	h->cgroup_id = TAPIO_RD(btf, task, cgroups, dfl_cgrp, kn, id);
	/* The process's name, not the thread's (dig sends from "isc-net-0000"). */
	struct task_struct *leader = TAPIO_RD(btf, task, group_leader);
	if (btf) {
		/* Plain loads: the kernel keeps comm NUL-padded (strscpy_pad). */
		struct task_struct *named = leader ? leader : task;
		__builtin_memcpy(h->comm, named->comm, sizeof(h->comm));
	} else {
		bpf_probe_read_kernel_str(h->comm, sizeof(h->comm),
					  leader ? leader->comm : task->comm);
	}
}

/* The header for `task`, any task pointer (read with probe reads). */
static __always_inline void tapio_fill_header(struct tapio_event_header *h,
					      struct task_struct *task, __u32 kind)
{
	__tapio_fill_header(h, task, kind, 0);
}

/* The header for the current task (typed: plain loads). */
static __always_inline void tapio_fill_header_current(struct tapio_event_header *h, __u32 kind)
{
	__tapio_fill_header(h, bpf_get_current_task_btf(), kind, 1);
}

/*
 * A copy length in [1, max] that every verifier can see, for helpers whose
 * size argument may not be 0 (bpf_probe_read_kernel, bpf_skb_load_bytes).
 * Older verifiers (6.1) lose a checked bound when clang spills and reloads
 * it, so the mask is applied in asm right before the call, to (want - 1),
 * and 1 added back: for want in [1, max] that is want itself. `max` must be
 * a power of two; callers check want against it first.
 */
#define TAPIO_LEN_1_TO(want, max)                                              \
	({                                                                     \
		__u64 __n = (__u64)(want)-1;                                   \
		asm volatile("%[n] &= %[m]" : [n] "+r"(__n) : [m] "i"((max)-1)); \
		__n + 1;                                                       \
	})

/* Syscall tracepoint records (include/trace/syscall.h,
 * syscalls/sys_enter_* and sys_exit_*): the layout is fixed ABI of the
 * tracing subsystem, the same on every kernel. */
struct sys_enter_ctx {
	__u64 common;
	__s32 nr;
	__u32 _pad;
	__u64 args[6];
};
struct sys_exit_ctx {
	__u64 common;
	__s32 nr;
	__u32 _pad;
	__s64 ret;
};

#endif /* TAPIO_BPF_H */
