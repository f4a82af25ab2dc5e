// SPDX-License-Identifier: GPL-2.0-only
/*
 * Kernel events: the OOM killer's victims (kernel.oom_kill), and io_uring
 * (ring creation, completions per opcode, sampled latency).
 *
 * mark_victim fires in __oom_kill_process right after the victim got
 * SIGKILL, with the victim's task locked and its mm still attached, so
 * what it held can be read before the OOM reaper frees it. Two attach
 * paths, picked by userspace at load time:
 *   - tp_btf/mark_victim with the (task, uid) prototype (Linux 6.8+, and
 *     stable backports such as Debian's 6.1.0-56): the victim's own task,
 *     so its cgroup, tgid and memory come from the victim even though it
 *     dies right after;
 *   - tracepoint/oom/mark_victim: the record's fields. Older kernels have
 *     only `pid` in it, newer ones comm and the memory figures; which
 *     exist is decided at load time (CO-RE field existence), so one object
 *     loads on both. The cgroup is the trigger's (current).
 */
#include "tapio_bpf.h"
#include "tapio_cgroup.h"

TAPIO_PROBE_MAPS();

typedef struct tapio_oom_kill tapio_oom_kill;
TAPIO_ABI_BTF(tapio_oom_kill);

/*
 * Every victim seen, counted before the ring buffer is asked for room, so
 * `tapio.oom.kills` counts kills whose record was lost too (those are also
 * in tapio_lost). Per-CPU, one slot; userspace sums the CPUs.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} tapio_oom_kills SEC(".maps");

/* x86_64 only (the objects are built with -D__TARGET_ARCH_x86): 4 KiB
 * pages. mm counters count pages. */
#define TAPIO_PAGE_SHIFT 12

/* Before 6.2, mm->rss_stat was one struct of atomic counters (plus
 * per-task caches folded in every 64 events); since, an array of
 * percpu_counters. Both are read as the kernel's own get_mm_counter()
 * reads them: the shared count, without the per-CPU (or per-task) deltas
 * not yet folded in. Approximate by up to a few pages per CPU. */
struct mm_rss_stat___pre62 {
	atomic_long_t count[4];
} __attribute__((preserve_access_index));

struct mm_struct___pre62 {
	struct mm_rss_stat___pre62 rss_stat;
} __attribute__((preserve_access_index));

/* enum mm_counter_type; stable since 4.5 (MM_SHMEMPAGES added then).
 * Literal indices: a CO-RE array access needs a constant subscript. */
#define TAPIO_MM_FILEPAGES 0
#define TAPIO_MM_ANONPAGES 1
#define TAPIO_MM_SWAPENTS 2
#define TAPIO_MM_SHMEMPAGES 3

#define TAPIO_MM_PAGES(mm, idx)                                                \
	({                                                                     \
		long __n;                                                      \
		if (bpf_core_type_exists(struct mm_rss_stat___pre62))          \
			__n = BPF_CORE_READ((struct mm_struct___pre62 *)(mm),  \
					    rss_stat.count[idx].counter);      \
		else                                                           \
			__n = BPF_CORE_READ((mm), rss_stat[idx].count);        \
		(__u64)(__n > 0 ? __n : 0);                                    \
	})

static __always_inline void count_kill(void)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&tapio_oom_kills, &zero);
	if (n)
		*n += 1;
}

/* Reserve a record and clear all but the cgroup names (terminated
 * instead: 256 bytes of memset would be wasted on names read next). */
static __always_inline struct tapio_oom_kill *reserve(void)
{
	struct tapio_oom_kill *e = tapio_reserve(&tapio_events, &tapio_lost, sizeof(*e));
	if (!e)
		return 0;
	__builtin_memset(e, 0, offsetof(struct tapio_oom_kill, cgroup_leaf));
	e->cgroup_leaf[0] = 0;
	e->cgroup_parent[0] = 0;
	return e;
}

/* The task whose allocation ran out of memory: current. */
static __always_inline void fill_trigger(struct tapio_oom_kill *e, struct task_struct *cur)
{
	e->trigger_pid = BPF_CORE_READ(cur, tgid);
	e->trigger_tid = BPF_CORE_READ(cur, pid);
	struct task_struct *leader = BPF_CORE_READ(cur, group_leader);
	bpf_probe_read_kernel_str(e->trigger_comm, sizeof(e->trigger_comm),
				  leader ? leader->comm : cur->comm);
}

/* Everything from the victim's task: header (tgid, ppid, ids, comm,
 * cgroup id), cgroup names, memory and oom_score_adj. */
static __always_inline void fill_victim(struct tapio_oom_kill *e, struct task_struct *task)
{
	tapio_fill_header(&e->hdr, task, TAPIO_EVENT_OOM_KILL);
	tapio_read_cgroup_names(e->cgroup_leaf, e->cgroup_parent, task);
	e->flags |= TAPIO_OOM_HAS_TGID | TAPIO_OOM_HAS_COMM | TAPIO_OOM_HAS_UID |
		    TAPIO_OOM_VICTIM_CGROUP | TAPIO_OOM_HAS_SCORE_ADJ;
	e->oom_score_adj = BPF_CORE_READ(task, signal, oom_score_adj);
	struct mm_struct *mm = BPF_CORE_READ(task, mm);
	if (!mm)
		return;
	e->total_vm_bytes = (__u64)BPF_CORE_READ(mm, total_vm) << TAPIO_PAGE_SHIFT;
	e->anon_rss_bytes = TAPIO_MM_PAGES(mm, TAPIO_MM_ANONPAGES) << TAPIO_PAGE_SHIFT;
	e->file_rss_bytes = TAPIO_MM_PAGES(mm, TAPIO_MM_FILEPAGES) << TAPIO_PAGE_SHIFT;
	e->shmem_rss_bytes = TAPIO_MM_PAGES(mm, TAPIO_MM_SHMEMPAGES) << TAPIO_PAGE_SHIFT;
	e->swap_bytes = TAPIO_MM_PAGES(mm, TAPIO_MM_SWAPENTS) << TAPIO_PAGE_SHIFT;
	long pgt = BPF_CORE_READ(mm, pgtables_bytes.counter);
	e->pgtables_bytes = pgt > 0 ? pgt : 0;
	e->flags |= TAPIO_OOM_HAS_MEMORY | TAPIO_OOM_HAS_SWAP;
}

SEC("tp_btf/mark_victim")
int BPF_PROG(tapio_oom_victim_btf, struct task_struct *task, uid_t uid)
{
	/*
	 * A direct load, not BPF_CORE_READ: where mark_victim's prototype is
	 * (int pid), the argument is a scalar and the verifier refuses this
	 * dereference, so the tracepoint variant loads instead of this one
	 * reading kernel memory at an address that is really a pid.
	 */
	int tgid = task->tgid;
	count_kill();
	struct tapio_oom_kill *e = reserve();
	if (!e)
		return 0;
	e->source = TAPIO_OOM_SRC_TP_BTF;
	fill_victim(e, task);
	e->hdr.pid = tgid;
	/* The uid the kernel logs (the task's objective cred), as passed. */
	e->hdr.uid = uid;
	fill_trigger(e, bpf_get_current_task_btf());
	tapio_submit(&tapio_events, e);
	return 0;
}

/* The kB figures of the classic record, back to bytes. */
#define TAPIO_KB(ctx, field) ((__u64)BPF_CORE_READ(ctx, field) << 10)

SEC("tracepoint/oom/mark_victim")
int tapio_oom_victim_tp(struct trace_event_raw_mark_victim *ctx)
{
	count_kill();
	struct tapio_oom_kill *e = reserve();
	if (!e)
		return 0;
	struct task_struct *cur = bpf_get_current_task_btf();
	e->source = TAPIO_OOM_SRC_TRACEPOINT;
	fill_trigger(e, cur);
	/* The record's pid is the victim thread's id (task->pid). */
	__u32 victim = BPF_CORE_READ(ctx, pid);
	if (victim == e->trigger_tid) {
		/* The allocating task chose itself (a memcg OOM of a
		 * single-process container, typically): current is the
		 * victim, so read it as the tp_btf variant does. */
		fill_victim(e, cur);
		tapio_submit(&tapio_events, e);
		return 0;
	}
	e->hdr.ts_ns = bpf_ktime_get_boot_ns();
	e->hdr.kind = TAPIO_EVENT_OOM_KILL;
	e->hdr.pid = victim;
	e->hdr.tid = victim;
	/* Not the victim's cgroup, but for a memcg OOM the trigger sits in
	 * the cgroup that ran out, which is the victim's or its parent's. */
	e->hdr.cgroup_id = BPF_CORE_READ(cur, cgroups, dfl_cgrp, kn, id);
	tapio_read_cgroup_names(e->cgroup_leaf, e->cgroup_parent, cur);
	if (bpf_core_field_exists(ctx->__data_loc_comm)) {
		/* __data_loc: the low 16 bits are the string's offset. */
		__u32 loc = BPF_CORE_READ(ctx, __data_loc_comm);
		bpf_probe_read_kernel_str(e->hdr.comm, sizeof(e->hdr.comm),
					  (const char *)ctx + (loc & 0xFFFF));
		e->flags |= TAPIO_OOM_HAS_COMM;
	}
	if (bpf_core_field_exists(ctx->uid)) {
		e->hdr.uid = BPF_CORE_READ(ctx, uid);
		e->flags |= TAPIO_OOM_HAS_UID;
	}
	if (bpf_core_field_exists(ctx->anon_rss)) {
		e->total_vm_bytes = TAPIO_KB(ctx, total_vm);
		e->anon_rss_bytes = TAPIO_KB(ctx, anon_rss);
		e->file_rss_bytes = TAPIO_KB(ctx, file_rss);
		e->shmem_rss_bytes = TAPIO_KB(ctx, shmem_rss);
		e->pgtables_bytes = TAPIO_KB(ctx, pgtables);
		e->flags |= TAPIO_OOM_HAS_MEMORY;
	}
	if (bpf_core_field_exists(ctx->oom_score_adj)) {
		e->oom_score_adj = BPF_CORE_READ(ctx, oom_score_adj);
		e->flags |= TAPIO_OOM_HAS_SCORE_ADJ;
	}
	tapio_submit(&tapio_events, e);
	return 0;
}

/*
 * io_uring. Requests neither enter nor leave through per-operation
 * syscalls (one io_uring_enter submits many; with SQPOLL none is made), so
 * the io_uring tracepoints are the one place every operation is seen.
 * They fire per operation, so (and the record is read straight from the
 * tracepoint's context, CO-RE-relocated, without a helper call):
 *   - completions are counted per opcode and result in a per-CPU array,
 *     exact, no map lookup beyond the array;
 *   - only a sampled share of requests (tapio_sample_threshold) is timed,
 *     through an LRU map keyed by the request's address. Whether a request
 *     is sampled is a hash of its address and user_data, which both
 *     tracepoints carry: the completion of an unsampled request (most of
 *     them) is decided without a map lookup.
 */
typedef struct tapio_io_uring_create tapio_io_uring_create;
TAPIO_ABI_BTF(tapio_io_uring_create);

/* Set by userspace before load: a request is timed when
 * bpf_get_prandom_u32() <= threshold (0xffffffff: every one). */
const volatile __u32 tapio_sample_threshold = 0xffffffff;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TAPIO_IO_URING_OPS * TAPIO_IO_URING_RESULTS);
	__type(key, __u32);
	__type(value, __u64);
} tapio_io_uring_ops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TAPIO_IO_URING_OPS);
	__type(key, __u32);
	__type(value, struct tapio_hist);
} tapio_io_uring_hist SEC(".maps");

/* Submission time of sampled requests in flight, by request address. A
 * request that never completes ages out (LRU). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u64);
} tapio_io_uring_inflight SEC(".maps");

SEC("tracepoint/io_uring/io_uring_create")
int tapio_io_uring_create_tp(struct trace_event_raw_io_uring_create *ctx)
{
	struct tapio_io_uring_create *e =
		tapio_reserve(&tapio_events, &tapio_lost, sizeof(*e));
	if (!e)
		return 0;
	tapio_fill_header_current(&e->hdr, TAPIO_EVENT_IO_URING_CREATE);
	e->fd = ctx->fd;
	e->sq_entries = ctx->sq_entries;
	e->cq_entries = ctx->cq_entries;
	e->flags = ctx->flags;
	tapio_submit(&tapio_events, e);
	return 0;
}

/* Is this request timed? The same answer at submission and completion.
 * Applications give each request its own user_data (a counter or a
 * pointer), so requests reusing a cached io_kiocb are sampled afresh; with
 * a constant user_data it degrades to sampling by request slot. */
static __always_inline int io_uring_timed(__u64 req, __u64 user_data)
{
	if (tapio_sample_threshold == 0)
		return 0;
	if (tapio_sample_threshold == 0xffffffff)
		return 1;
	__u64 h = (req ^ (user_data * 0x9E3779B97F4A7C15ULL)) * 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return (__u32)(h >> 32) <= tapio_sample_threshold;
}

/* Remember when a sampled request was submitted. */
static __always_inline void io_uring_submitted(__u64 req, __u64 user_data)
{
	if (!req || !io_uring_timed(req, user_data))
		return;
	__u64 now = bpf_ktime_get_ns();
	if (bpf_map_update_elem(&tapio_io_uring_inflight, &req, &now, BPF_ANY))
		tapio_count_lost(&tapio_lost, TAPIO_LOST_MAP_FULL);
}

SEC("tracepoint/io_uring/io_uring_submit_req")
int tapio_io_uring_submit_tp(struct trace_event_raw_io_uring_submit_req *ctx)
{
	io_uring_submitted((__u64)ctx->req, ctx->user_data);
	return 0;
}

/* The same event before Linux 6.2 (Debian's 6.1 among them). */
struct trace_event_raw_io_uring_submit_sqe {
	void *req;
	unsigned long long user_data;
} __attribute__((preserve_access_index));

SEC("tracepoint/io_uring/io_uring_submit_sqe")
int tapio_io_uring_submit_sqe_tp(struct trace_event_raw_io_uring_submit_sqe *ctx)
{
	io_uring_submitted((__u64)ctx->req, ctx->user_data);
	return 0;
}

SEC("tracepoint/io_uring/io_uring_complete")
int tapio_io_uring_complete_tp(struct trace_event_raw_io_uring_complete *ctx)
{
	/* Auxiliary CQEs (posted without a request, e.g. for MSG_RING) have
	 * no opcode to count them under. */
	struct io_kiocb *req = ctx->req;
	if (!req)
		return 0;
	__u32 op = BPF_CORE_READ(req, opcode);
	if (op >= TAPIO_IO_URING_OPS)
		op = TAPIO_IO_URING_OPS - 1;
	int res = ctx->res;
	__u32 slot = op * TAPIO_IO_URING_RESULTS +
		     (res < 0 ? TAPIO_IO_URING_ERROR : TAPIO_IO_URING_OK);
	__u64 *n = bpf_map_lookup_elem(&tapio_io_uring_ops, &slot);
	if (n)
		*n += 1;
	/* Multishot requests post several CQEs: the first one ends the
	 * timing. Unsampled requests need no lookup. */
	__u64 key = (__u64)req;
	if (!io_uring_timed(key, ctx->user_data))
		return 0;
	__u64 *t0 = bpf_map_lookup_elem(&tapio_io_uring_inflight, &key);
	if (!t0)
		return 0;
	__u64 ns = bpf_ktime_get_ns() - *t0;
	bpf_map_delete_elem(&tapio_io_uring_inflight, &key);
	struct tapio_hist *h = bpf_map_lookup_elem(&tapio_io_uring_hist, &op);
	if (!h)
		return 0;
	__u32 b = log2_bucket(ns);
	if (b < TAPIO_HIST_BUCKETS)
		h->buckets[b] += 1;
	h->sum_ns += ns;
	return 0;
}

/*
 * Sampled memory allocations: page (kmem/mm_page_alloc) and slab
 * (kmem/kmalloc, kmem/kmem_cache_alloc) allocations, through tp_btf (the
 * raw tracepoint's arguments: no trace record is built for us, which the
 * classic tracepoint would do on every allocation before we could decide
 * to skip it). Allocations are the hottest events a probe can hook, so:
 *   - an unsampled allocation costs one per-CPU array lookup and a
 *     decrement; no helper call, no random number;
 *   - a sampled one (on average 1 in N, N = tapio_mem_sampler.every) adds
 *     N and N * size to its cgroup's per-CPU sums; the next gap is drawn
 *     uniformly from 1..2N-1;
 *   - nothing goes to the ring buffer: userspace reads the sums.
 * The cgroup is the running task's. Allocations made in interrupt context
 * (network receive, timers) are charged to whatever task was interrupted,
 * as the kernel's own tracepoints would show them.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tapio_mem_sampler);
} tapio_mem_sampler SEC(".maps");

/* Sums per (cgroup, allocator). LRU: cgroups come and go; an evicted
 * cgroup's last sums were already read by userspace, which keeps its own
 * running totals. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct tapio_mem_key);
	__type(value, struct tapio_mem_usage);
} tapio_mem_usage SEC(".maps");

/* cgroup id -> its names, written at a key's first sample. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct tapio_mem_cgroup);
} tapio_mem_cgroups SEC(".maps");

/* Scratch for the names (256 bytes: not on the BPF stack). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tapio_mem_cgroup);
} tapio_mem_scratch SEC(".maps");

/* Is this allocation sampled? On yes, *every is the N it stands for. */
static __always_inline int mem_take(__u32 *every)
{
	__u32 zero = 0;
	struct tapio_mem_sampler *s = bpf_map_lookup_elem(&tapio_mem_sampler, &zero);
	if (!s)
		return 0;
	__u32 n = s->every;
	if (n == 0)
		return 0;
	__u32 left = s->left;
	if (left > 1) {
		s->left = left - 1;
		return 0;
	}
	/* n <= TAPIO_MEM_MAX_EVERY (validated), so 2n - 1 fits. */
	s->left = n == 1 ? 1 : 1 + bpf_get_prandom_u32() % (2 * n - 1);
	*every = n;
	return 1;
}

static __always_inline void mem_record(__u32 allocator, __u64 size, __u32 n)
{
	struct tapio_mem_key k = {
		.cgroup_id = bpf_get_current_cgroup_id(),
		.allocator = allocator,
	};
	struct tapio_mem_usage *u = bpf_map_lookup_elem(&tapio_mem_usage, &k);
	if (u) {
		u->allocations += n;
		u->bytes += size * n;
		u->samples += 1;
		return;
	}
	/* A new key. From BPF, an update of a per-CPU map writes this CPU's
	 * slot only, so a key another CPU added meanwhile keeps its sums. */
	struct tapio_mem_usage v = { .allocations = n, .bytes = size * n, .samples = 1 };
	if (bpf_map_update_elem(&tapio_mem_usage, &k, &v, BPF_ANY)) {
		tapio_count_lost(&tapio_lost, TAPIO_LOST_MAP_FULL);
		return;
	}
	if (bpf_map_lookup_elem(&tapio_mem_cgroups, &k.cgroup_id))
		return;
	__u32 zero = 0;
	struct tapio_mem_cgroup *names = bpf_map_lookup_elem(&tapio_mem_scratch, &zero);
	if (!names)
		return;
	names->leaf[0] = 0;
	names->parent[0] = 0;
	tapio_read_cgroup_names(names->leaf, names->parent, bpf_get_current_task_btf());
	bpf_map_update_elem(&tapio_mem_cgroups, &k.cgroup_id, names, BPF_NOEXIST);
}

SEC("tp_btf/mm_page_alloc")
int BPF_PROG(tapio_mem_page_alloc, struct page *page, unsigned int order)
{
	__u32 n;
	if (!page || !mem_take(&n))
		return 0;
	mem_record(TAPIO_MEM_PAGE, (__u64)1 << (TAPIO_PAGE_SHIFT + (order & 31)), n);
	return 0;
}

/* `ptr` (the object, NULL when the allocation failed) is not read: before
 * Linux 6.14 or so the verifier refuses to load a `void *` argument of a
 * tp_btf program ("arg1 type UNKNOWN is not a struct", the 6.12 guest), so
 * slab allocations that failed are counted too (rare: they fail only under
 * memory pressure, with __GFP_NOFAIL absent). */
SEC("tp_btf/kmalloc")
int BPF_PROG(tapio_mem_kmalloc, unsigned long call_site, const void *ptr, size_t bytes_req,
	     size_t bytes_alloc)
{
	__u32 n;
	if (!mem_take(&n))
		return 0;
	mem_record(TAPIO_MEM_KMALLOC, bytes_alloc, n);
	return 0;
}

/* Since Linux 6.1 the event passes the cache, not the sizes. */
SEC("tp_btf/kmem_cache_alloc")
int BPF_PROG(tapio_mem_kmem_cache_alloc, unsigned long call_site, const void *ptr,
	     struct kmem_cache *s)
{
	__u32 n;
	if (!mem_take(&n))
		return 0;
	mem_record(TAPIO_MEM_KMEM_CACHE, BPF_CORE_READ(s, size), n);
	return 0;
}
