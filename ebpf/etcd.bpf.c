// SPDX-License-Identifier: GPL-2.0-only
/*
 * etcd: how long its write-ahead log takes to reach the disk. etcd calls
 * fdatasync on the WAL's tail segment (a `*.wal` file) for every batch of
 * raft entries it persists, and waits for it before it acknowledges: the
 * latency etcd operators watch most (etcd's own
 * etcd_disk_wal_fsync_duration_seconds measures the same call from Go).
 *
 * Hooks: the fdatasync and fsync syscall tracepoints (no kprobes needed).
 * Entry: is the caller a watched process (comm in tapio_etcd_comms) and is
 * the descriptor a *.wal file? Then its entry time is kept by thread. Exit:
 * the call's time goes into a per-CPU log2 histogram, and a call slower
 * than tapio_slow_ns also becomes a ring-buffer record (a span). Other
 * processes' syncs cost a comm comparison; etcd's bbolt database syncs
 * (member/snap/db) fail the name check.
 */
#include "tapio_bpf.h"

TAPIO_PROBE_MAPS();

typedef struct tapio_etcd_fsync tapio_etcd_fsync;
TAPIO_ABI_BTF(tapio_etcd_fsync);

/* Set by userspace before load (RingConfig::sampled): the span threshold.
 * The threshold global is unused (every sync is counted) but every
 * sampling object declares it. */
const volatile __u64 tapio_slow_ns = 100000000;
const volatile __u32 tapio_sample_threshold = 0xffffffff;

/* Syscall tracepoint records (include/trace/syscall.h): fixed ABI. */
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

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, TAPIO_ETCD_MAX_COMMS);
	__type(key, __u32);
	__type(value, struct tapio_etcd_comm);
} tapio_etcd_comms SEC(".maps");

/* Every WAL sync's time (tapio.etcd.wal_fsync.duration). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tapio_hist);
} tapio_etcd_wal_hist SEC(".maps");

struct inflight {
	__u64 start_ns;
	__s32 fd;
	__u32 syscall;
	char file[TAPIO_ETCD_FILE_LEN];
};

/* Syncs in progress, by thread (pid_tgid). LRU: a thread that dies in
 * the call leaves nothing behind for long. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, struct inflight);
} tapio_etcd_inflight SEC(".maps");

/* Scratch for the entry (too big for a comfortable stack). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct inflight);
} tapio_etcd_scratch SEC(".maps");

static __always_inline int watched(void)
{
	char comm[TAPIO_COMM_LEN] = {};
	bpf_get_current_comm(comm, sizeof(comm));
	__u64 c0 = *(__u64 *)&comm[0], c1 = *(__u64 *)&comm[8];
#pragma unroll
	for (__u32 i = 0; i < TAPIO_ETCD_MAX_COMMS; i++) {
		__u32 k = i;
		struct tapio_etcd_comm *w = bpf_map_lookup_elem(&tapio_etcd_comms, &k);
		if (!w)
			return 0;
		__u64 w0 = *(__u64 *)&w->comm[0], w1 = *(__u64 *)&w->comm[8];
		if (!w0)
			return 0;
		if (w0 == c0 && w1 == c1)
			return 1;
	}
	return 0;
}

/* The name of the caller's file `fd` into `name`; its length with the
 * NUL, or <= 0. */
static __always_inline long fd_name(int fd, char *name)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt || fd < 0 || (unsigned int)fd >= BPF_CORE_READ(fdt, max_fds))
		return -1;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = 0;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) || !f)
		return -1;
	const unsigned char *n = BPF_CORE_READ(f, f_path.dentry, d_name.name);
	return bpf_probe_read_kernel_str(name, TAPIO_ETCD_FILE_LEN, n);
}

static __always_inline int enter(struct sys_enter_ctx *ctx, __u32 syscall)
{
	if (!watched())
		return 0;
	__u32 zero = 0;
	struct inflight *in = bpf_map_lookup_elem(&tapio_etcd_scratch, &zero);
	if (!in)
		return 0;
	int fd = (int)ctx->args[0];
	long len = fd_name(fd, in->file);
	/* "x.wal" and its NUL: at least 6 bytes. */
	if (len < 6 || len > TAPIO_ETCD_FILE_LEN)
		return 0;
	__u32 e = (len - 5) & (TAPIO_ETCD_FILE_LEN - 1);
	if (e + 4 > TAPIO_ETCD_FILE_LEN - 1)
		return 0;
	if (in->file[e] != '.' || in->file[e + 1] != 'w' || in->file[e + 2] != 'a' ||
	    in->file[e + 3] != 'l')
		return 0;
	in->fd = fd;
	in->syscall = syscall;
	in->start_ns = bpf_ktime_get_boot_ns();
	__u64 id = bpf_get_current_pid_tgid();
	if (bpf_map_update_elem(&tapio_etcd_inflight, &id, in, BPF_ANY))
		tapio_count_lost(&tapio_lost, TAPIO_LOST_MAP_FULL);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_fdatasync")
int tapio_etcd_fdatasync_enter(struct sys_enter_ctx *ctx)
{
	return enter(ctx, 0);
}

SEC("tracepoint/syscalls/sys_enter_fsync")
int tapio_etcd_fsync_enter(struct sys_enter_ctx *ctx)
{
	return enter(ctx, 1);
}

/* Both exits. */
SEC("tracepoint/syscalls/sys_exit_fdatasync")
int tapio_etcd_sync_exit(struct sys_exit_ctx *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct inflight *in = bpf_map_lookup_elem(&tapio_etcd_inflight, &id);
	if (!in)
		return 0;
	__u64 now = bpf_ktime_get_boot_ns();
	__u64 ns = now - in->start_ns;
	__u32 zero = 0;
	struct tapio_hist *h = bpf_map_lookup_elem(&tapio_etcd_wal_hist, &zero);
	if (h) {
		__u32 b = log2_bucket(ns);
		if (b < TAPIO_HIST_BUCKETS)
			h->buckets[b] += 1;
		h->sum_ns += ns;
	}
	if (ns >= tapio_slow_ns) {
		struct tapio_etcd_fsync *e =
			tapio_reserve(&tapio_events, &tapio_lost, sizeof(*e));
		if (e) {
			tapio_fill_header(&e->hdr, bpf_get_current_task_btf(),
					  TAPIO_EVENT_ETCD_WAL_FSYNC);
			e->hdr.ts_ns = now;
			e->start_ns = in->start_ns;
			e->duration_ns = ns;
			e->ret = ctx->ret;
			e->fd = in->fd;
			e->syscall = in->syscall;
			__builtin_memcpy(e->file, in->file, sizeof(e->file));
			tapio_submit(&tapio_events, e);
		}
	}
	bpf_map_delete_elem(&tapio_etcd_inflight, &id);
	return 0;
}
