// SPDX-License-Identifier: GPL-2.0-only
/*
 * Network namespaces being made, and CNI plugins being executed: the
 * kernel half of a pod's network setup timeline. Userspace adds the rest
 * (interfaces, addresses, routes, namespace deletion) from rtnetlink.
 *
 *   sys_enter/exit_unshare  a task that asked for CLONE_NEWNET and is in
 *                           another namespace on return made a new one
 *                           (`ip netns add`, runc, pause containers);
 *   sched_process_fork      a child whose namespace differs from its
 *                           parent's was cloned with CLONE_NEWNET;
 *   sched_process_exec      an exec of a file under the CNI bin directory:
 *                           the plugin, with its environment (CNI_COMMAND,
 *                           CNI_CONTAINERID, ...) copied from the new
 *                           image's stack before the plugin can run, so
 *                           even a plugin that exits at once is complete.
 *
 * No kprobes or trampolines: tracepoints that every supported kernel has.
 */
#include "tapio_bpf.h"

TAPIO_PROBE_MAPS();

typedef struct tapio_netns_create tapio_netns_create;
typedef struct tapio_cni_exec tapio_cni_exec;
TAPIO_ABI_BTF(tapio_netns_create);
TAPIO_ABI_BTF(tapio_cni_exec);

#define CLONE_NEWNET_FLAG 0x40000000

/* The CNI bin directory with its trailing '/', NUL-padded; an empty one
 * turns the exec program off. Set by userspace before load. */
const volatile char tapio_cni_dir[TAPIO_CNI_DIR_LEN] = {};
const volatile __u32 tapio_cni_dir_len = 0;

/* Threads inside unshare(CLONE_NEWNET): their namespace at entry. LRU:
 * an entry whose exit was never seen ages out. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, __u64);
} tapio_netns_unsharing SEC(".maps");

/* Exec paths are compared here, not on the stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, char[TAPIO_CNI_DIR_LEN]);
} tapio_cni_scratch SEC(".maps");

static __always_inline __u64 netns_ino(struct task_struct *t)
{
	return BPF_CORE_READ(t, nsproxy, net_ns, ns.inum);
}

static __always_inline void emit_create(struct task_struct *task, __u64 ino, __u64 parent,
					__u32 via, __u32 child)
{
	struct tapio_netns_create *e = tapio_reserve(&tapio_events, &tapio_lost, sizeof(*e));
	if (!e)
		return;
	__builtin_memset(e, 0, sizeof(*e));
	tapio_fill_header(&e->hdr, task, TAPIO_EVENT_NETNS_CREATE);
	e->netns_ino = ino;
	e->parent_netns_ino = parent;
	e->via = via;
	e->child_pid = child;
	tapio_submit(&tapio_events, e);
}

SEC("tracepoint/syscalls/sys_enter_unshare")
int tapio_netns_unshare_enter(struct sys_enter_ctx *ctx)
{
	if (!(ctx->args[0] & CLONE_NEWNET_FLAG))
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	__u64 ino = netns_ino(bpf_get_current_task_btf());
	if (bpf_map_update_elem(&tapio_netns_unsharing, &id, &ino, BPF_ANY))
		tapio_count_lost(&tapio_lost, TAPIO_LOST_MAP_FULL);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_unshare")
int tapio_netns_unshare_exit(struct sys_exit_ctx *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u64 *before = bpf_map_lookup_elem(&tapio_netns_unsharing, &id);
	if (!before)
		return 0;
	__u64 parent = *before;
	bpf_map_delete_elem(&tapio_netns_unsharing, &id);
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 now = netns_ino(task);
	if (ctx->ret == 0 && now && now != parent)
		emit_create(task, now, parent, TAPIO_NETNS_UNSHARE, 0);
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(tapio_netns_fork, struct task_struct *parent, struct task_struct *child)
{
	/* Without CLONE_NEWNET the child shares its parent's nsproxy. */
	__u64 was = netns_ino(parent);
	__u64 now = netns_ino(child);
	if (!now || now == was)
		return 0;
	emit_create(parent, now, was, TAPIO_NETNS_CLONE, BPF_CORE_READ(child, tgid));
	return 0;
}

/* Does the exec path start with the CNI directory? */
static __always_inline int in_cni_dir(const char *filename)
{
	__u32 n = tapio_cni_dir_len;
	if (n == 0 || n > TAPIO_CNI_DIR_LEN)
		return 0;
	__u32 zero = 0;
	char *buf = bpf_map_lookup_elem(&tapio_cni_scratch, &zero);
	if (!buf)
		return 0;
	if (bpf_probe_read_kernel_str(buf, TAPIO_CNI_DIR_LEN, filename) <= 0)
		return 0;
	for (int i = 0; i < TAPIO_CNI_DIR_LEN; i++) {
		if (i >= n)
			break;
		if (buf[i] != tapio_cni_dir[i])
			return 0;
	}
	return 1;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(tapio_cni_on_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	const char *filename = BPF_CORE_READ(bprm, filename);
	if (!filename || !in_cni_dir(filename))
		return 0;
	struct tapio_cni_exec *e = tapio_reserve(&tapio_events, &tapio_lost, sizeof(*e));
	if (!e)
		return 0;
	__builtin_memset(e, 0, offsetof(struct tapio_cni_exec, filename));
	tapio_fill_header(&e->hdr, p, TAPIO_EVENT_CNI_EXEC);
	e->netns_ino = netns_ino(p);
	long n = bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), filename);
	if (n > 0) {
		e->filename_len = n - 1;
		if (n == sizeof(e->filename))
			e->flags |= TAPIO_CNI_FILENAME_TRUNCATED;
	}
	/* The new image's environment, as execve laid it out on its stack. */
	struct mm_struct *mm = BPF_CORE_READ(p, mm);
	__u64 start = BPF_CORE_READ(mm, env_start);
	__u64 end = BPF_CORE_READ(mm, env_end);
	__u64 total = end > start ? end - start : 0;
	e->env_total = total > 0xffffffff ? 0xffffffff : total;
	if (total) {
		__u64 want = total;
		if (want > TAPIO_CNI_ENV_LEN) {
			start = end - TAPIO_CNI_ENV_LEN;
			want = TAPIO_CNI_ENV_LEN;
			e->flags |= TAPIO_CNI_ENV_TAIL;
		}
		__u64 len = TAPIO_LEN_1_TO(want, TAPIO_CNI_ENV_LEN);
		if (bpf_probe_read_user(e->env, len, (const void *)start) == 0) {
			e->env_len = len;
		} else {
			e->flags |= TAPIO_CNI_ENV_UNREADABLE;
			tapio_count_lost(&tapio_lost, TAPIO_LOST_READ_ERROR);
		}
	}
	tapio_submit(&tapio_events, e);
	return 0;
}
