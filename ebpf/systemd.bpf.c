// SPDX-License-Identifier: GPL-2.0-only
/*
 * systemd unit lifecycle, from the cgroups systemd makes for its units.
 *
 * systemd gives every service and scope a cgroup v2 directory named after
 * the unit (system.slice/nginx.service, user.slice/user-1000.slice/
 * session-3.scope), moves the unit's first process into it, and removes
 * the directory once the last process has gone. The cgroup tracepoints see
 * each step on any kernel with cgroup v2, whatever the systemd version:
 *   cgroup_mkdir        the unit's cgroup appears (state starts here);
 *   cgroup_attach_task  a process is moved in (a write to cgroup.procs);
 *   sched_process_fork  a process is forked straight into it (clone3 with
 *                       CLONE_INTO_CGROUP, which newer systemd uses: no
 *                       attach event fires for that);
 *   sched_process_exit  a process of the unit ends: counted, with OOM
 *                       kills and failures, into the unit's state;
 *   cgroup_rmdir        the unit is gone: its totals go out, state is freed.
 * Which units belong to which slice is decided in userspace (config); the
 * kernel only keeps state for directories named *.service or *.scope.
 */
#include "tapio_bpf.h"
#include "tapio_cgroup.h"

TAPIO_PROBE_MAPS();

typedef struct tapio_unit_event tapio_unit_event;
typedef struct tapio_unit_state tapio_unit_state;
TAPIO_ABI_BTF(tapio_unit_event);
TAPIO_ABI_BTF(tapio_unit_state);

/* cgroup id -> the unit's totals. Userspace adds the units that existed
 * before it started (flag TAPIO_UNIT_PREEXISTING). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, TAPIO_UNIT_MAX);
	__type(key, __u64);
	__type(value, struct tapio_unit_state);
} tapio_units SEC(".maps");

/* Deepest cgroup below a unit whose exits still count for it (services
 * that delegate make their own subtrees). */
#define UNIT_WALK_MAX 8

/* The cgroup v2 (default) hierarchy is hierarchy 0; v1 hierarchies of a
 * hybrid host fire the same tracepoints with their own ids. */
static __always_inline int on_v2(struct cgroup *cgrp)
{
	return BPF_CORE_READ(cgrp, root, hierarchy_id) == 0;
}

/* Does the NUL-free string buf[0..n) end with suf (sl bytes, sl <= 8)? */
static __always_inline int ends_with(const char *buf, __u32 n, const char *suf, __u32 sl)
{
	if (n < sl || n >= TAPIO_UNIT_PATH_LEN)
		return 0;
	__u32 off = n - sl;
#pragma unroll
	for (int i = 0; i < 8; i++) {
		if (i >= sl)
			break;
		if (buf[(off + i) & (TAPIO_UNIT_PATH_LEN - 1)] != suf[i])
			return 0;
	}
	return 1;
}

/* Copy the tracepoint's cgroup path into e->path; 1 when it names a unit. */
static __always_inline int read_path(struct tapio_unit_event *e, const char *path)
{
	e->path[0] = 0;
	if (!path)
		return 0;
	long n = bpf_probe_read_kernel_str(e->path, sizeof(e->path), path);
	if (n <= 1)
		return 0;
	if (n == sizeof(e->path))
		e->flags |= TAPIO_UNIT_PATH_CUT;
	e->path_len = n - 1;
	return ends_with(e->path, n - 1, ".service", 8) || ends_with(e->path, n - 1, ".scope", 6);
}

static __always_inline struct tapio_unit_event *reserve(__u32 op, struct task_struct *task,
							__u64 unit_id)
{
	struct tapio_unit_event *e = tapio_reserve(&tapio_events, &tapio_lost, sizeof(*e));
	if (!e)
		return 0;
	__builtin_memset(e, 0, offsetof(struct tapio_unit_event, path));
	tapio_fill_header(&e->hdr, task, TAPIO_EVENT_UNIT);
	e->op = op;
	e->unit_cgroup_id = unit_id;
	return e;
}

SEC("tp_btf/cgroup_mkdir")
int BPF_PROG(tapio_unit_mkdir, struct cgroup *cgrp, const char *path)
{
	/* Units sit below a slice: level 2 or deeper. */
	int level = BPF_CORE_READ(cgrp, level);
	if (level < 2 || !on_v2(cgrp))
		return 0;
	__u64 id = BPF_CORE_READ(cgrp, kn, id);
	struct task_struct *task = bpf_get_current_task_btf();
	struct tapio_unit_event *e = reserve(TAPIO_UNIT_CREATED, task, id);
	if (!e)
		return 0;
	if (!read_path(e, path)) {
		bpf_ringbuf_discard(e, BPF_RB_NO_WAKEUP);
		return 0;
	}
	e->level = level;
	e->state.created_ns = e->hdr.ts_ns;
	/* From the stack: 6.1's verifier takes no ring-buffer memory as a
	 * map value argument. */
	struct tapio_unit_state st = {};
	st.created_ns = e->hdr.ts_ns;
	if (bpf_map_update_elem(&tapio_units, &id, &st, BPF_ANY))
		tapio_count_lost(&tapio_lost, TAPIO_LOST_MAP_FULL);
	tapio_submit(&tapio_events, e);
	return 0;
}

/* `task` entered unit cgroup `id` (by attach or by fork): the first one
 * starts the unit. */
static __always_inline int entered(__u64 id, struct task_struct *task, const char *path,
				   __u32 how)
{
	struct tapio_unit_state *st = bpf_map_lookup_elem(&tapio_units, &id);
	if (!st || st->first_ns)
		return 0;
	/* Two CPUs may move processes in at once: one of them is first.
	 * (64-bit compare-and-swap: the 32-bit one needs -mcpu=v3.) */
	__u64 now = bpf_ktime_get_boot_ns();
	if (__sync_val_compare_and_swap(&st->first_ns, 0, now) != 0)
		return 0;
	st->first_pid = BPF_CORE_READ(task, tgid);
	st->flags |= how;
	struct tapio_unit_event *e = reserve(TAPIO_UNIT_STARTED, task, id);
	if (!e)
		return 0;
	read_path(e, path);
	e->flags |= how;
	e->level = BPF_CORE_READ(task, cgroups, dfl_cgrp, level);
	__builtin_memcpy(&e->state, st, sizeof(e->state));
	tapio_submit(&tapio_events, e);
	return 0;
}

SEC("tp_btf/cgroup_attach_task")
int BPF_PROG(tapio_unit_attach, struct cgroup *dst, const char *path, struct task_struct *task,
	     bool threadgroup)
{
	if (!on_v2(dst))
		return 0;
	return entered(BPF_CORE_READ(dst, kn, id), task, path, 0);
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(tapio_unit_fork, struct task_struct *parent, struct task_struct *child)
{
	/* A new thread is not a new process. */
	if (BPF_CORE_READ(child, pid) != BPF_CORE_READ(child, tgid))
		return 0;
	__u64 cid = BPF_CORE_READ(child, cgroups, dfl_cgrp, kn, id);
	if (cid == BPF_CORE_READ(parent, cgroups, dfl_cgrp, kn, id))
		return 0;
	return entered(cid, child, 0, TAPIO_UNIT_FORKED_IN);
}

/* The unit `task` runs in: its cgroup or the nearest ancestor with state. */
static __always_inline struct tapio_unit_state *unit_of(struct task_struct *task)
{
	struct kernfs_node *kn = BPF_CORE_READ(task, cgroups, dfl_cgrp, kn);
#pragma unroll
	for (int i = 0; i < UNIT_WALK_MAX; i++) {
		if (!kn)
			return 0;
		__u64 id = BPF_CORE_READ(kn, id);
		struct tapio_unit_state *st = bpf_map_lookup_elem(&tapio_units, &id);
		if (st)
			return st;
		kn = tapio_kn_parent(kn);
	}
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(tapio_unit_exit, struct task_struct *task)
{
	/* The process, not each thread: the last one out. */
	if (BPF_CORE_READ(task, signal, live.counter) != 0)
		return 0;
	struct tapio_unit_state *st = unit_of(task);
	if (!st)
		return 0;
	/* exit_code is a wait(2) status; a group exit's is the group's. */
	int status = BPF_CORE_READ(task, exit_code);
	struct signal_struct *sig = BPF_CORE_READ(task, signal);
	if (sig && (BPF_CORE_READ(sig, flags) & 0x00000004 /* SIGNAL_GROUP_EXIT */))
		status = BPF_CORE_READ(sig, group_exit_code);
	int code = (status >> 8) & 0xff;
	__u32 signo = status & 0x7f;
	int oom = BPF_CORE_READ(task, signal, oom_mm) != 0;
	/* systemd's clean signals for a service's processes: SIGHUP, SIGINT,
	 * SIGTERM, SIGPIPE (what `systemctl stop` sends is not a failure). */
	int clean_signal = signo == 1 || signo == 2 || signo == 13 || signo == 15;
	__sync_fetch_and_add(&st->exits, 1);
	if (oom)
		__sync_fetch_and_add(&st->oom_kills, 1);
	if (oom || code != 0 || (signo != 0 && !clean_signal)) {
		__sync_fetch_and_add(&st->failed_exits, 1);
		st->last_failed_pid = BPF_CORE_READ(task, tgid);
		st->last_exit_code = code;
		st->last_exit_signal = signo;
	}
	return 0;
}

SEC("tp_btf/cgroup_rmdir")
int BPF_PROG(tapio_unit_rmdir, struct cgroup *cgrp, const char *path)
{
	int level = BPF_CORE_READ(cgrp, level);
	if (level < 2 || !on_v2(cgrp))
		return 0;
	__u64 id = BPF_CORE_READ(cgrp, kn, id);
	struct tapio_unit_state *st = bpf_map_lookup_elem(&tapio_units, &id);
	struct task_struct *task = bpf_get_current_task_btf();
	struct tapio_unit_event *e = reserve(TAPIO_UNIT_REMOVED, task, id);
	if (!e) {
		if (st)
			bpf_map_delete_elem(&tapio_units, &id);
		return 0;
	}
	/* A unit Tapio never saw created still ends (state-less): the path
	 * tells userspace what it was. */
	int unit = read_path(e, path);
	if (!st && !unit) {
		bpf_ringbuf_discard(e, BPF_RB_NO_WAKEUP);
		return 0;
	}
	e->level = level;
	if (st) {
		__builtin_memcpy(&e->state, st, sizeof(e->state));
		e->flags |= st->flags;
		bpf_map_delete_elem(&tapio_units, &id);
	}
	tapio_submit(&tapio_events, e);
	return 0;
}
