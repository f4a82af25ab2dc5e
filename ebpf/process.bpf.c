// SPDX-License-Identifier: GPL-2.0-only
/*
 * Process lifecycle: exec, exit and fork as ring-buffer records.
 *
 * Two attach paths for each event, picked by userspace at load time:
 *   - tp_btf (BTF-typed raw tracepoints): direct typed arguments, cheapest;
 *   - tracepoint (classic): works where tp_btf is refused.
 * Both share the same bodies; only the way they find the task differs.
 *
 * probes.scope: every hook here runs in the subject's own context (exec
 * and exit in the task itself, fork in the parent), so the check is on
 * current, before the reserve.
 */
#include "tapio_bpf.h"
#include "tapio_cgroup.h"
#include "tapio_scope.h"

TAPIO_PROBE_MAPS();

typedef struct tapio_process_exec tapio_process_exec;
typedef struct tapio_process_exit tapio_process_exit;
typedef struct tapio_process_fork tapio_process_fork;
TAPIO_ABI_BTF(tapio_process_exec);
TAPIO_ABI_BTF(tapio_process_exit);
TAPIO_ABI_BTF(tapio_process_fork);

/* Copy argv of the (already exec'd) current task into e->args. */
static __always_inline void read_args(struct tapio_process_exec *e, struct task_struct *task)
{
	struct mm_struct *mm = BPF_CORE_READ(task, mm);
	if (!mm) {
		e->flags |= TAPIO_EXEC_ARGS_UNREADABLE;
		return;
	}
	unsigned long start = BPF_CORE_READ(mm, arg_start);
	unsigned long end = BPF_CORE_READ(mm, arg_end);
	unsigned long len = end - start;
	if (end <= start) {
		e->flags |= TAPIO_EXEC_ARGS_UNREADABLE;
		return;
	}
	if (len > TAPIO_ARGS_LEN) {
		len = TAPIO_ARGS_LEN;
		e->flags |= TAPIO_EXEC_ARGS_TRUNCATED;
	}
	/* The mask restates the bound in a form every verifier version
	 * tracks through the register spill above. */
	len &= (TAPIO_ARGS_LEN * 2 - 1);
	if (len > TAPIO_ARGS_LEN)
		return;
	if (bpf_probe_read_user(e->args, len, (void *)start) < 0) {
		e->flags |= TAPIO_EXEC_ARGS_UNREADABLE;
		return;
	}
	e->args_len = len;
}

static __always_inline int emit_exec(struct task_struct *task, const char *filename,
				     __u32 old_pid)
{
	if (!tapio_current_in_scope())
		return 0;
	struct tapio_process_exec *e =
		tapio_reserve(&tapio_events, &tapio_lost, sizeof(*e));
	if (!e)
		return 0;
	/* Ring-buffer memory is not zeroed. Clearing all 1.6 KiB would cost
	 * more than the event; clear the fixed part and terminate each string
	 * up front, and userspace reads strings only up to their *_len or NUL. */
	__builtin_memset(e, 0, offsetof(struct tapio_process_exec, cgroup_leaf));
	e->cgroup_leaf[0] = 0;
	e->cgroup_parent[0] = 0;
	e->filename[0] = 0;
	tapio_fill_header(&e->hdr, task, TAPIO_EVENT_PROCESS_EXEC);
	e->start_ns = BPF_CORE_READ(task, group_leader, start_boottime);
	e->old_pid = old_pid;
	long n = bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), filename);
	if (n > 0) {
		e->filename_len = n - 1;
		if (n == sizeof(e->filename))
			e->flags |= TAPIO_EXEC_FILENAME_TRUNCATED;
	}
	tapio_read_cgroup_names(e->cgroup_leaf, e->cgroup_parent, task);
	read_args(e, task);
	tapio_submit(&tapio_events, e);
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(tapio_exec_btf, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	return emit_exec(p, BPF_CORE_READ(bprm, filename), old_pid);
}

SEC("tracepoint/sched/sched_process_exec")
int tapio_exec_tp(struct trace_event_raw_sched_process_exec *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	/* __data_loc: low 16 bits are the offset of the string in the record. */
	__u32 loc = BPF_CORE_READ(ctx, __data_loc_filename);
	return emit_exec(task, (const char *)ctx + (loc & 0xFFFF), BPF_CORE_READ(ctx, old_pid));
}

static __always_inline int emit_exit(struct task_struct *task)
{
	/* Report the process, not each thread: only when the last thread of
	 * the group goes (signal->live dropped to zero before this point). */
	if (BPF_CORE_READ(task, signal, live.counter) != 0)
		return 0;
	if (!tapio_current_in_scope())
		return 0;
	struct tapio_process_exit *e =
		tapio_reserve(&tapio_events, &tapio_lost, sizeof(*e));
	if (!e)
		return 0;
	__builtin_memset(e, 0, sizeof(*e));
	tapio_fill_header(&e->hdr, task, TAPIO_EVENT_PROCESS_EXIT);
	e->start_ns = BPF_CORE_READ(task, group_leader, start_boottime);
	/* exit_code is a wait(2) status: (code << 8) | signal | 0x80 core. */
	int status = BPF_CORE_READ(task, exit_code);
	struct signal_struct *sig = BPF_CORE_READ(task, signal);
	if (sig && (BPF_CORE_READ(sig, flags) & 0x00000004 /* SIGNAL_GROUP_EXIT */))
		status = BPF_CORE_READ(sig, group_exit_code);
	e->exit_code = (status >> 8) & 0xff;
	e->exit_signal = status & 0x7f;
	e->core_dumped = (status & 0x80) ? 1 : 0;
	tapio_submit(&tapio_events, e);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(tapio_exit_btf, struct task_struct *p)
{
	return emit_exit(p);
}

SEC("tracepoint/sched/sched_process_exit")
int tapio_exit_tp(void *ctx)
{
	return emit_exit(bpf_get_current_task_btf());
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(tapio_fork_btf, struct task_struct *parent, struct task_struct *child)
{
	__u32 child_pid = BPF_CORE_READ(child, pid);
	__u32 child_tgid = BPF_CORE_READ(child, tgid);
	/* A new thread is not a new process. */
	if (child_pid != child_tgid)
		return 0;
	/* The parent's scope: a child created straight into another cgroup
	 * (clone3 CLONE_INTO_CGROUP) is reported by its parent's. */
	if (!tapio_current_in_scope())
		return 0;
	struct tapio_process_fork *e =
		tapio_reserve(&tapio_events, &tapio_lost, sizeof(*e));
	if (!e)
		return 0;
	__builtin_memset(e, 0, sizeof(*e));
	tapio_fill_header(&e->hdr, parent, TAPIO_EVENT_PROCESS_FORK);
	e->child_pid = child_tgid;
	e->child_start_ns = BPF_CORE_READ(child, start_boottime);
	tapio_submit(&tapio_events, e);
	return 0;
}

/* No classic-tracepoint twin for fork: its record carries only the child's
 * pid, which cannot tell a new process from a new thread. Kernels without
 * tp_btf (< 5.5) get exec and exit only; `tapio probes` says so. */
