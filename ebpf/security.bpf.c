// SPDX-License-Identifier: GPL-2.0-only
/*
 * Security observability: credential changes, capability use, code
 * injection signals (ptrace, process_vm_writev, memfd exec, W+X memory),
 * kernel module and BPF program loads, and changes to watched files.
 *
 * Tracepoint-family hooks first: this probe must work where kprobes,
 * fentry/fexit and BPF LSM are refused. Where the kernel allows them,
 * fentry/commit_creds and fexit/cap_capable (else kprobes on the same
 * functions) see credential changes from every path and capability
 * checks on kernels without the cap_capable tracepoint; userspace tries
 * those variants first. Most signals are syscall tracepoints in two
 * halves: the sys_enter program decides whether the
 * call is interesting and parks what it knows in a per-thread pending
 * map; the sys_exit program adds the result and emits. So a record says
 * what happened, not what was attempted, and failures carry their errno.
 *
 * Some programs are attached to several syscalls (one body per argument
 * layout); exit programs are shared by every syscall of a family.
 */
#include "tapio_bpf.h"

TAPIO_PROBE_MAPS();

typedef struct tapio_sec_cred tapio_sec_cred;
typedef struct tapio_sec_event tapio_sec_event;
TAPIO_ABI_BTF(tapio_sec_cred);
TAPIO_ABI_BTF(tapio_sec_event);

/* The per-syscall tracepoint program `name` (the fallback path): the
 * same body the dispatcher calls for that syscall. */
#define SYSCALL_TP(event, name)                                                \
	SEC("tracepoint/syscalls/" #event)                                     \
	int name(struct sys_enter_ctx *ctx)                                    \
	{                                                                      \
		return name##_body(ctx);                                       \
	}

/* Index into tapio_sec_cfg (set by userspace after load). */
enum {
	CFG_SELF_TGID = 0,   /* Tapio's own pid: its BPF loads and capability
			      * checks are not reported */
	CFG_FIM_DEPTH = 1,   /* ancestors checked above a file (0: files only) */
	CFG_WRITE_WINDOW = 2,/* ns: one write record per (process, file) per window */
	CFG_MAX = 4,
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, CFG_MAX);
	__type(key, __u32);
	__type(value, __u64);
} tapio_sec_cfg SEC(".maps");

/* A syscall between enter and exit, in the task itself (op != 0 while
 * parked). Task storage: the exit of every hooked syscall looks here
 * (each write() when files are watched), and a task storage lookup is a
 * few loads from the task where a hash by tid hashes and locks; it is
 * freed with the task, so a thread killed mid-syscall leaks nothing. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct tapio_sec_event);
} tapio_sec_pending SEC(".maps");

struct cred_snap {
	__u64 cap_eff;
	__u64 cap_prm;
	struct tapio_ids ids;
};

/* The credentials at a set*id/exec entry, kept in the task itself until
 * its exit. Task storage, not a hash by tid: a lookup is a few loads from
 * the task (no hashing, no LRU lock), it is freed with the task (a thread
 * killed mid-syscall leaks nothing), and exec from a non-leader thread,
 * which changes the tid, still finds its entry. */
struct cred_pending {
	struct cred_snap snap;
	__u64 armed; /* 1 between enter and exit */
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct cred_pending);
} tapio_sec_cred_pending SEC(".maps");

/* "Already reported" set: capability use per (process, cap, outcome),
 * W+X per process, ptrace pokes per (tracer, target, request),
 * process_vm_writev per (writer, target). start_ns tells a reused pid
 * from the process that had it before. LRU bounds memory; an evicted
 * entry is reported again, which errs on the side of telling. */
struct dedup_key {
	__u64 start_ns;
	__u64 extra;
	__u32 tgid;
	__u32 op;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct dedup_key);
	__type(value, __u8);
} tapio_sec_seen SEC(".maps");

/* Watched files and directories by inode, value: watch index. */
struct watch_ino {
	__u64 ino;
	__u32 dev;
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct watch_ino);
	__type(value, __u32);
} tapio_sec_watch_ino SEC(".maps");

/* A 4096-bit filter of the watched inode numbers, one bit per inode at
 * watch_bit(ino), set by userspace with the same function for every key of
 * tapio_sec_watch_ino. The write check tests the file and each parent it
 * walks: a clear bit (nearly always) is one load where the hash lookup
 * hashes and probes; a set bit still needs the lookup. */
#define WATCH_BITS 4096
struct watch_bits {
	__u64 w[WATCH_BITS / 64];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct watch_bits);
} tapio_sec_watch_bits SEC(".maps");

/* Keep in step with watch_bit() in exporter/src/probes/security.rs. */
static __always_inline __u32 watch_bit(__u64 ino)
{
	return (ino ^ (ino >> 12) ^ (ino >> 24)) & (WATCH_BITS - 1);
}

/* Might (ino, dev) be watched? No filter (never, the array always has its
 * one entry): yes. */
static __always_inline int maybe_watched(struct watch_bits *b, __u64 ino)
{
	if (!b)
		return 1;
	__u32 bit = watch_bit(ino);
	return (b->w[(bit >> 6) & (WATCH_BITS / 64 - 1)] >> (bit & 63)) & 1;
}

/* Watched paths relative to each of their ancestor directories: key
 * (ancestor inode, FNV-1a 64 of the rest of the path), value: watch
 * index. A path argument is hashed from its start directory (cwd, dfd
 * or root) and looked up at every '/' and at its end. */
struct watch_rel {
	__u64 ino;
	__u64 hash;
	__u32 dev;
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct watch_rel);
	__type(value, __u32);
} tapio_sec_watch_rel SEC(".maps");

/* Write dedup: last record time per (process, file). */
struct write_key {
	__u64 ino;
	__u32 dev;
	__u32 tgid;
};

struct write_seen {
	__u64 last_ns;
	__u64 suppressed;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct write_key);
	__type(value, struct write_seen);
} tapio_sec_writes SEC(".maps");

/* Records are built here, not on the 512-byte stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tapio_sec_event);
} tapio_sec_scratch SEC(".maps");

#define AT_FDCWD_ -100
#define PROT_WRITE_ 0x2
#define PROT_EXEC_ 0x4
#define O_TRUNC_ 01000
#define FMODE_WRITE_ 0x2
#define S_IFMT_ 00170000
#define S_IFREG_ 0100000
#define TMPFS_MAGIC_ 0x01021994
#define HUGETLBFS_MAGIC_ 0x958458f6
/* Longest chain of parents checked above a file. */
#define MAX_FIM_DEPTH 16

static __always_inline __u64 cfg(__u32 i)
{
	__u64 *v = bpf_map_lookup_elem(&tapio_sec_cfg, &i);
	return v ? *v : 0;
}

static __always_inline __u32 self_tid(void)
{
	return (__u32)bpf_get_current_pid_tgid();
}

static __always_inline __u32 self_tgid(void)
{
	return bpf_get_current_pid_tgid() >> 32;
}

static __always_inline __u64 proc_start(struct task_struct *task)
{
	return BPF_CORE_READ(task, group_leader, start_boottime);
}

/* First report of `op`/`extra` for the current process? Marks it seen. */
static __always_inline int first_time(struct task_struct *task, __u32 op, __u64 extra)
{
	struct dedup_key k = {
		.start_ns = proc_start(task),
		.extra = extra,
		.tgid = self_tgid(),
		.op = op,
	};
	__u8 one = 1;
	if (bpf_map_lookup_elem(&tapio_sec_seen, &k))
		return 0;
	if (bpf_map_update_elem(&tapio_sec_seen, &k, &one, BPF_ANY))
		tapio_count_lost(&tapio_lost, TAPIO_LOST_MAP_FULL);
	return 1;
}

static __always_inline struct tapio_sec_event *scratch(void)
{
	__u32 zero = 0;
	struct tapio_sec_event *e = bpf_map_lookup_elem(&tapio_sec_scratch, &zero);
	if (!e)
		return 0;
	/* Clear the fixed part; name is bounded by name_len. */
	__builtin_memset(e, 0, offsetof(struct tapio_sec_event, name));
	e->name[0] = 0;
	return e;
}

/* How many tasks have a record parked, system-wide. Every write() exits
 * through a hooked tracepoint when files are watched, and nearly none has
 * anything parked: one load of this (an inlined array lookup) sends it
 * back before the task storage lookup. Counted on the 0 -> op and op -> 0
 * transitions of a task's slot; a task that died with a record parked
 * (its storage freed before any exit) leaves it one too high, which only
 * sends exits to the lookup as before. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __s64);
} tapio_sec_parked_tasks SEC(".maps");

static __always_inline __s64 *parked_tasks(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&tapio_sec_parked_tasks, &zero);
}

/* Park `e` until the syscall's exit. */
static __always_inline void park(struct tapio_sec_event *e)
{
	struct tapio_sec_event *p = bpf_task_storage_get(
		&tapio_sec_pending, bpf_get_current_task_btf(), 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!p) {
		tapio_count_lost(&tapio_lost, TAPIO_LOST_MAP_FULL);
		return;
	}
	__s64 *n = parked_tasks();
	if (n && !p->op)
		__sync_fetch_and_add(n, 1);
	bpf_probe_read_kernel(p, sizeof(*p), e);
}

/* What this task parked at its syscall's entry, NULL if nothing. */
static __always_inline struct tapio_sec_event *parked(void)
{
	__s64 *n = parked_tasks();
	if (n && *n <= 0)
		return 0;
	struct tapio_sec_event *p =
		bpf_task_storage_get(&tapio_sec_pending, bpf_get_current_task_btf(), 0, 0);
	return p && p->op ? p : 0;
}

/* The exit took `e`: its slot is free again. */
static __always_inline void unpark(struct tapio_sec_event *e)
{
	e->op = 0;
	__s64 *n = parked_tasks();
	if (n)
		__sync_fetch_and_add(n, -1);
}

/* Copy `e` to the ring buffer and submit it. */
static __always_inline void emit(struct tapio_sec_event *e)
{
	struct tapio_sec_event *r = tapio_reserve(&tapio_events, &tapio_lost, sizeof(*r));
	if (!r)
		return;
	bpf_probe_read_kernel(r, sizeof(*r), e);
	tapio_submit(&tapio_events, r);
}

static __always_inline void set_name_user(struct tapio_sec_event *e, const void *p)
{
	long n = bpf_probe_read_user_str(e->name, sizeof(e->name), p);
	if (n > 0) {
		e->name_len = n - 1;
		if (n == sizeof(e->name))
			e->flags |= TAPIO_SEC_NAME_TRUNCATED;
	} else {
		e->name[0] = 0;
	}
}

static __always_inline void set_name_kernel(struct tapio_sec_event *e, const void *p)
{
	long n = bpf_probe_read_kernel_str(e->name, sizeof(e->name), p);
	if (n > 0) {
		e->name_len = n - 1;
		if (n == sizeof(e->name))
			e->flags |= TAPIO_SEC_NAME_TRUNCATED;
	} else {
		e->name[0] = 0;
	}
}

/* ------------------------------------------------------------------ */
/* Credentials                                                          */

/* `task` comes from bpf_get_current_task_btf(): a BTF pointer, so its
 * fields are read with plain (fault-safe, CO-RE-relocated) loads, several
 * times cheaper than a bpf_probe_read_kernel call each. This runs on every
 * set*id and exec twice. */
static __always_inline void snap_cred(struct cred_snap *s, struct task_struct *task)
{
	const struct cred *c = task->real_cred;
	if (!c)
		return;
	s->ids.uid = c->uid.val;
	s->ids.euid = c->euid.val;
	s->ids.suid = c->suid.val;
	s->ids.fsuid = c->fsuid.val;
	s->ids.gid = c->gid.val;
	s->ids.egid = c->egid.val;
	s->ids.sgid = c->sgid.val;
	s->ids.fsgid = c->fsgid.val;
	/* kernel_cap_t is { u64 val } since 6.3 and { u32 cap[2] } before:
	 * the same 8 little-endian bytes either way, and the verifier allows
	 * an 8-byte load over an array of ints, so a plain load serves both. */
	s->cap_eff = *(const __u64 *)&c->cap_effective;
	s->cap_prm = *(const __u64 *)&c->cap_permitted;
}

/* sys_enter of setuid, setgid, setreuid, setregid, setresuid,
 * setresgid, setfsuid, setfsgid, execve, execveat. */
static __always_inline int cred_enter(void)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct cred_pending *p = bpf_task_storage_get(&tapio_sec_cred_pending, task, 0,
						      BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!p) {
		tapio_count_lost(&tapio_lost, TAPIO_LOST_MAP_FULL);
		return 0;
	}
	snap_cred(&p->snap, task);
	p->armed = 1;
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_setuid")
int tapio_sec_cred_enter(struct sys_enter_ctx *ctx)
{
	return cred_enter();
}

/* Report old -> now if the ids or capability sets differ. The header is
 * filled from `task`; uid/gid are set from `now` (commit_creds runs
 * before the task has its new cred). */
static __always_inline void emit_cred_change(struct task_struct *task, struct cred_snap *old,
					     struct cred_snap *now, __u32 nr, __u32 source)
{
	if (__builtin_memcmp(&now->ids, &old->ids, sizeof(now->ids)) == 0 &&
	    now->cap_eff == old->cap_eff && now->cap_prm == old->cap_prm)
		return;
	struct tapio_sec_cred *e = tapio_reserve(&tapio_events, &tapio_lost, sizeof(*e));
	if (!e)
		return;
	__builtin_memset(e, 0, sizeof(*e));
	tapio_fill_header(&e->hdr, task, TAPIO_EVENT_SEC_CRED);
	e->hdr.uid = now->ids.uid;
	e->hdr.gid = now->ids.gid;
	e->old_ids = old->ids;
	e->new_ids = now->ids;
	e->old_cap_eff = old->cap_eff;
	e->new_cap_eff = now->cap_eff;
	e->old_cap_prm = old->cap_prm;
	e->new_cap_prm = now->cap_prm;
	e->syscall_nr = nr;
	e->source = source;
	tapio_submit(&tapio_events, e);
}

static __always_inline int cred_exit(__u32 nr)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct cred_pending *p = bpf_task_storage_get(&tapio_sec_cred_pending, task, 0, 0);
	if (!p || !p->armed)
		return 0;
	p->armed = 0;
	struct cred_snap now = {};
	snap_cred(&now, task);
	/* setfsuid/setfsgid return the previous fsuid, not 0: change is what
	 * counts, so the return value is not checked. */
	emit_cred_change(task, &p->snap, &now, nr, TAPIO_SEC_CRED_SYSCALL);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_setuid")
int tapio_sec_cred_exit(struct sys_exit_ctx *ctx)
{
	return cred_exit(ctx->nr);
}

/* ---- Credentials at the syscall exits only (tp_btf kernels) ----------
 *
 * The enter/exit pair above pays two tracepoints per set*id, and a
 * set*id that changes nothing costs ~90 ns alone: the pair doubled it.
 * Here each task carries the credentials it was last seen with (task
 * storage), and only the exits of the set*id/exec syscalls look: the
 * current ones against that, a record when they differ. The snapshot is
 * taken when a process is born (tp_btf/sched_process_fork, the child's
 * credentials as copy_process left them), for the tasks alive when Tapio
 * starts by a task iterator run once after the hooks attach, and at each
 * hooked exit. A thread born since the start is compared with its
 * process's snapshot at its first hooked exit; an exit that finds neither
 * takes one and reports nothing, as the pair does for a syscall entered
 * before Tapio. A thread born since the start that execs becomes the
 * leader and its process's snapshot goes with the old leader, so the
 * exec's entry gives such a thread a snapshot of its own first (see
 * tapio_sec_cred_seen_exec). Values are compared,
 * not cred pointers: a freed cred's address is reused. capset, unshare
 * and setns have exits here too; a change by a path without one (keyctl,
 * a kernel-internal commit: commit_creds sees those where it can be
 * hooked) shows at the task's next hooked exit, under that syscall. */
struct cred_seen {
	struct cred_snap snap;
	__u64 valid; /* snap holds the task's credentials */
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct cred_seen);
} tapio_sec_cred_seen SEC(".maps");

static __always_inline struct cred_seen *cred_seen_of(struct task_struct *task)
{
	struct cred_seen *s =
		bpf_task_storage_get(&tapio_sec_cred_seen, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!s)
		tapio_count_lost(&tapio_lost, TAPIO_LOST_MAP_FULL);
	return s;
}

/* Processes only: creating the storage is an allocation (~1.4 µs a run
 * with bpf_stats, where a thread's create and join take ~35 µs here). A
 * thread starts with its creator's credentials (CLONE_THREAD shares the
 * cred), so until its first hooked exit its process's snapshot stands
 * for it (see the exit). */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(tapio_sec_cred_fork, struct task_struct *parent, struct task_struct *child)
{
	if (child->group_leader != child)
		return 0;
	struct cred_seen *s = cred_seen_of(child);
	if (s) {
		snap_cred(&s->snap, child);
		s->valid = 1;
	}
	return 0;
}

/* Every task alive at the start (threads included), once: a snapshot
 * where the fork hook or an exit has not taken one. */
SEC("iter/task")
int tapio_sec_cred_iter(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;
	if (!task)
		return 0;
	struct cred_seen *s = cred_seen_of(task);
	if (s && !s->valid) {
		snap_cred(&s->snap, task);
		s->valid = 1;
	}
	return 0;
}

/* execve/execveat entry, threads only. An exec from a thread that is not
 * its process's main thread makes it the leader (de_thread) and releases
 * the old leader, its snapshot with it: the exit would find neither and a
 * setuid exec would go unreported. Such a thread takes its own snapshot
 * here, its process's (what it was last seen with) or, if there is none,
 * its current credentials. A main thread's exec (nearly all) returns
 * after two loads. */
SEC("tracepoint/syscalls/sys_enter_execve")
int tapio_sec_cred_seen_exec(struct sys_enter_ctx *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct task_struct *leader = task->group_leader;
	if (!leader || leader == task)
		return 0;
	struct cred_seen *s = bpf_task_storage_get(&tapio_sec_cred_seen, task, 0, 0);
	if (s && s->valid)
		return 0;
	struct cred_seen *l = bpf_task_storage_get(&tapio_sec_cred_seen, leader, 0, 0);
	s = cred_seen_of(task);
	if (!s)
		return 0;
	if (l && l->valid)
		s->snap = l->snap;
	else
		snap_cred(&s->snap, task);
	s->valid = 1;
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_setuid")
int tapio_sec_cred_seen_exit(struct sys_exit_ctx *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct cred_seen *s = bpf_task_storage_get(&tapio_sec_cred_seen, task, 0, 0);
	struct cred_snap now = {};
	snap_cred(&now, task);
	if (s && s->valid) {
		if (__builtin_memcmp(&now.ids, &s->snap.ids, sizeof(now.ids)) == 0 &&
		    now.cap_eff == s->snap.cap_eff && now.cap_prm == s->snap.cap_prm)
			return 0;
		/* setfsuid/setfsgid return the previous fsuid, not 0: change is
		 * what counts, so the return value is not checked. */
		emit_cred_change(task, &s->snap, &now, ctx->nr, TAPIO_SEC_CRED_SYSCALL);
		s->snap = now;
		return 0;
	}
	/* A thread born since the start: what its process was last seen
	 * with. (When glibc changes every thread, the leader may have taken
	 * the new credentials as its snapshot already; the thread then
	 * reports nothing, the leader's record stands for the process.) */
	struct task_struct *leader = task->group_leader;
	if (leader && leader != task) {
		struct cred_seen *l = bpf_task_storage_get(&tapio_sec_cred_seen, leader, 0, 0);
		if (l && l->valid)
			emit_cred_change(task, &l->snap, &now, ctx->nr, TAPIO_SEC_CRED_SYSCALL);
	}
	s = cred_seen_of(task);
	if (s) {
		s->snap = now;
		s->valid = 1;
	}
	return 0;
}

/* The same snapshot from any cred pointer (commit_creds' argument: a BTF
 * pointer under fentry, a plain one under kprobe, so CO-RE reads). */
static __always_inline void snap_cred_at(struct cred_snap *s, const struct cred *c)
{
	s->ids.uid = BPF_CORE_READ(c, uid.val);
	s->ids.euid = BPF_CORE_READ(c, euid.val);
	s->ids.suid = BPF_CORE_READ(c, suid.val);
	s->ids.fsuid = BPF_CORE_READ(c, fsuid.val);
	s->ids.gid = BPF_CORE_READ(c, gid.val);
	s->ids.egid = BPF_CORE_READ(c, egid.val);
	s->ids.sgid = BPF_CORE_READ(c, sgid.val);
	s->ids.fsgid = BPF_CORE_READ(c, fsgid.val);
	bpf_core_read(&s->cap_eff, sizeof(s->cap_eff), &c->cap_effective);
	bpf_core_read(&s->cap_prm, sizeof(s->cap_prm), &c->cap_permitted);
}

/* The syscall the task is in (x86_64 orig_ax), 0 if none or unknown:
 * which path called commit_creds. bpf_task_pt_regs: 5.15+. */
static __always_inline __u32 current_syscall(struct task_struct *task)
{
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
	if (!regs)
		return 0;
	long nr = BPF_CORE_READ(regs, orig_ax);
	return nr > 0 && nr < 1024 ? (__u32)nr : 0;
}

/* commit_creds(new) replaces current's credentials: the one place every
 * path goes through (set*id, exec, capset, unshare(CLONE_NEWUSER), setns,
 * keyctl session keyrings, ...). Old = current->real_cred, still in place
 * at entry. Only a change of ids or capability sets is reported. */
static __always_inline int commit_creds_common(const struct cred *new)
{
	if (!new)
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	struct cred_snap old = {}, now = {};
	snap_cred(&old, task);
	snap_cred_at(&now, new);
	emit_cred_change(task, &old, &now, current_syscall(task), TAPIO_SEC_CRED_COMMIT);
	return 0;
}

SEC("fentry/commit_creds")
int BPF_PROG(tapio_sec_commit_creds, struct cred *new)
{
	return commit_creds_common(new);
}

SEC("kprobe/commit_creds")
int BPF_KPROBE(tapio_sec_commit_creds_kp, struct cred *new)
{
	return commit_creds_common(new);
}

/* ------------------------------------------------------------------ */
/* Capability use                                                       */

/* cap_capable()'s opts: a check the kernel itself would not audit (e.g.
 * vm_enough_memory's CAP_SYS_ADMIN test on every mmap). */
#define CAP_OPT_NOAUDIT_ 2

/* One record per (process, capability, granted/denied). */
static __always_inline int capable_common(int cap, int ret, __u32 opts)
{
	__u32 tgid = self_tgid();
	__u64 self = cfg(CFG_SELF_TGID);
	/* self == 0: not configured yet, and Tapio's own checks (loading
	 * its programs) would be reported. */
	if (tgid == self || tgid == 0 || self == 0)
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 extra = ((__u64)(cap & 0xffff)) | ((ret == 0 ? 0ULL : 1ULL) << 16);
	if (!first_time(task, TAPIO_SEC_CAPABILITY, extra))
		return 0;
	struct tapio_sec_event *e = scratch();
	if (!e)
		return 0;
	tapio_fill_header(&e->hdr, task, TAPIO_EVENT_SEC);
	e->op = TAPIO_SEC_CAPABILITY;
	e->arg0 = cap;
	e->arg1 = opts;
	e->ret = ret;
	emit(e);
	return 0;
}

SEC("tracepoint/capability/cap_capable")
int tapio_sec_capable(struct trace_event_raw_cap_capable *ctx)
{
	return capable_common(BPF_CORE_READ(ctx, cap), BPF_CORE_READ(ctx, ret), 0);
}

/* Kernels without the tracepoint (before 6.14): the function itself.
 * Unlike the tracepoint these see opts, so NOAUDIT checks are skipped. */
SEC("fexit/cap_capable")
int BPF_PROG(tapio_sec_capable_fexit, const struct cred *cred, struct user_namespace *ns, int cap,
	     unsigned int opts, int ret)
{
	if (opts & CAP_OPT_NOAUDIT_)
		return 0;
	return capable_common(cap, ret, opts);
}

/* kprobe + kretprobe: the arguments parked by thread until the return. */
struct cap_args {
	__u32 cap;
	__u32 opts;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, struct cap_args);
} tapio_sec_cap_pending SEC(".maps");

SEC("kprobe/cap_capable")
int BPF_KPROBE(tapio_sec_capable_kp, const struct cred *cred, struct user_namespace *ns, int cap,
	       unsigned int opts)
{
	if (opts & CAP_OPT_NOAUDIT_)
		return 0;
	__u32 tid = self_tid();
	struct cap_args a = {.cap = cap, .opts = opts};
	if (bpf_map_update_elem(&tapio_sec_cap_pending, &tid, &a, BPF_ANY))
		tapio_count_lost(&tapio_lost, TAPIO_LOST_MAP_FULL);
	return 0;
}

SEC("kretprobe/cap_capable")
int BPF_KRETPROBE(tapio_sec_capable_kretp, int ret)
{
	__u32 tid = self_tid();
	struct cap_args *a = bpf_map_lookup_elem(&tapio_sec_cap_pending, &tid);
	if (!a)
		return 0;
	struct cap_args copy = *a;
	bpf_map_delete_elem(&tapio_sec_cap_pending, &tid);
	return capable_common(copy.cap, ret, copy.opts);
}

/* ------------------------------------------------------------------ */
/* ptrace, process_vm_writev, W+X memory, BPF and module loads          */

#define PTRACE_POKETEXT_ 4
#define PTRACE_POKEDATA_ 5
#define PTRACE_POKEUSER_ 6
#define PTRACE_SETREGS_ 13
#define PTRACE_SETFPREGS_ 15
#define PTRACE_ATTACH_ 16
#define PTRACE_SETREGSET_ 0x4205
#define PTRACE_SEIZE_ 0x4206

static __always_inline int tapio_sec_ptrace_enter_body(struct sys_enter_ctx *ctx)
{
	__u64 req = ctx->args[0];
	__u32 target = ctx->args[1];
	struct task_struct *task = bpf_get_current_task_btf();
	switch (req) {
	case PTRACE_ATTACH_:
	case PTRACE_SEIZE_:
		break;
	case PTRACE_POKETEXT_:
	case PTRACE_POKEDATA_:
	case PTRACE_POKEUSER_:
	case PTRACE_SETREGS_:
	case PTRACE_SETFPREGS_:
	case PTRACE_SETREGSET_:
		/* A debugger pokes thousands of words: once per tracer,
		 * target and request. */
		if (!first_time(task, TAPIO_SEC_PTRACE, ((__u64)target << 32) | (req & 0xffffffff)))
			return 0;
		break;
	default:
		return 0;
	}
	struct tapio_sec_event *e = scratch();
	if (!e)
		return 0;
	e->op = TAPIO_SEC_PTRACE;
	e->syscall_nr = ctx->nr;
	e->arg0 = req;
	e->arg1 = ctx->args[2];
	e->target_pid = target;
	park(e);
	return 0;
}
SYSCALL_TP(sys_enter_ptrace, tapio_sec_ptrace_enter)

static __always_inline int tapio_sec_vm_writev_enter_body(struct sys_enter_ctx *ctx)
{
	__u32 target = ctx->args[0];
	if (!first_time(bpf_get_current_task_btf(), TAPIO_SEC_VM_WRITEV, target))
		return 0;
	struct tapio_sec_event *e = scratch();
	if (!e)
		return 0;
	e->op = TAPIO_SEC_VM_WRITEV;
	e->syscall_nr = ctx->nr;
	e->target_pid = target;
	park(e);
	return 0;
}
SYSCALL_TP(sys_enter_process_vm_writev, tapio_sec_vm_writev_enter)

/* W+X is reported once per process (JITs map W+X memory all the time);
 * the first one is the interesting one for an interpreter that never
 * does it. Shared by mmap (prot is args[2]) and mprotect/pkey_mprotect
 * (prot is args[2] too). */
static __always_inline int wx_enter(struct sys_enter_ctx *ctx, __u64 flags)
{
	__u64 prot = ctx->args[2];
	if ((prot & (PROT_WRITE_ | PROT_EXEC_)) != (PROT_WRITE_ | PROT_EXEC_))
		return 0;
	if (!first_time(bpf_get_current_task_btf(), TAPIO_SEC_MEMORY_WX, 0))
		return 0;
	struct tapio_sec_event *e = scratch();
	if (!e)
		return 0;
	e->op = TAPIO_SEC_MEMORY_WX;
	e->syscall_nr = ctx->nr;
	e->arg0 = ctx->args[0];
	e->arg1 = ctx->args[1];
	e->arg2 = prot;
	e->arg3 = flags;
	park(e);
	return 0;
}

static __always_inline int tapio_sec_mmap_enter_body(struct sys_enter_ctx *ctx)
{
	return wx_enter(ctx, ctx->args[3]);
}
SYSCALL_TP(sys_enter_mmap, tapio_sec_mmap_enter)

static __always_inline int tapio_sec_mprotect_enter_body(struct sys_enter_ctx *ctx)
{
	return wx_enter(ctx, 0);
}
SYSCALL_TP(sys_enter_mprotect, tapio_sec_mprotect_enter)

#define BPF_PROG_LOAD_ 5
/* union bpf_attr, BPF_PROG_LOAD member (uapi, fixed offsets). */
#define ATTR_PROG_NAME_OFF 48
#define ATTR_EXPECTED_ATTACH_OFF 68

static __always_inline int tapio_sec_bpf_enter_body(struct sys_enter_ctx *ctx)
{
	if (ctx->args[0] != BPF_PROG_LOAD_)
		return 0;
	__u64 self = cfg(CFG_SELF_TGID);
	/* self == 0: not configured yet (Tapio itself still loading). */
	if (self_tgid() == self || self == 0)
		return 0;
	struct tapio_sec_event *e = scratch();
	if (!e)
		return 0;
	const char *attr = (const char *)ctx->args[1];
	__u64 size = ctx->args[2];
	__u32 head[2] = {}; /* prog_type, insn_cnt */
	bpf_probe_read_user(head, sizeof(head), attr);
	e->op = TAPIO_SEC_BPF_LOAD;
	e->syscall_nr = ctx->nr;
	e->arg0 = head[0];
	e->arg1 = head[1];
	if (size >= ATTR_EXPECTED_ATTACH_OFF + 4) {
		__u32 eat = 0;
		bpf_probe_read_user(&eat, sizeof(eat), attr + ATTR_EXPECTED_ATTACH_OFF);
		e->arg2 = eat;
	}
	if (size >= ATTR_PROG_NAME_OFF + 16) {
		/* BPF_OBJ_NAME_LEN is 16 and the kernel requires a NUL in it. */
		long n = bpf_probe_read_user_str(e->name, 16, attr + ATTR_PROG_NAME_OFF);
		if (n > 0)
			e->name_len = n - 1;
	}
	park(e);
	return 0;
}
SYSCALL_TP(sys_enter_bpf, tapio_sec_bpf_enter)

/* fd -> struct file of the current task, NULL when not open. `task` is a
 * BTF pointer (bpf_get_current_task_btf): direct loads down to the fd
 * array, which is indexed with a helper (no variable offsets on BTF
 * pointers). This is on every write() when files are watched. */
static __always_inline struct file *fd_file(struct task_struct *task, __u64 fd)
{
	struct files_struct *files = task->files;
	if (!files)
		return 0;
	struct fdtable *fdt = files->fdt;
	if (!fdt)
		return 0;
	if (fd >= fdt->max_fds)
		return 0;
	struct file **fds = fdt->fd;
	struct file *f = 0;
	if (!fds)
		return 0;
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd & 0xffffff]);
	return f;
}

/* init_module(image, len, args) and finit_module(fd, args, flags). */
static __always_inline int tapio_sec_init_module_enter_body(struct sys_enter_ctx *ctx)
{
	struct tapio_sec_event *e = scratch();
	if (!e)
		return 0;
	e->op = TAPIO_SEC_MODULE_LOAD;
	e->syscall_nr = ctx->nr;
	park(e);
	return 0;
}
SYSCALL_TP(sys_enter_init_module, tapio_sec_init_module_enter)

static __always_inline int tapio_sec_finit_module_enter_body(struct sys_enter_ctx *ctx)
{
	struct tapio_sec_event *e = scratch();
	if (!e)
		return 0;
	e->op = TAPIO_SEC_MODULE_LOAD;
	e->syscall_nr = ctx->nr;
	e->arg0 = ctx->args[0];
	struct file *f = fd_file(bpf_get_current_task_btf(), ctx->args[0]);
	if (f)
		set_name_kernel(e, BPF_CORE_READ(f, f_path.dentry, d_name.name));
	park(e);
	return 0;
}
SYSCALL_TP(sys_enter_finit_module, tapio_sec_finit_module_enter)

/* module:module_load fires inside load_module(), in the loading task:
 * put the module's own name into the pending record. The record layout
 * is fixed (taints, __data_loc name). */
struct module_load_ctx {
	__u64 common;
	__u32 taints;
	__u32 data_loc_name;
};

SEC("tracepoint/module/module_load")
int tapio_sec_module_load(struct module_load_ctx *ctx)
{
	struct tapio_sec_event *e = parked();
	if (!e || e->op != TAPIO_SEC_MODULE_LOAD)
		return 0;
	e->flags &= ~TAPIO_SEC_NAME_TRUNCATED;
	set_name_kernel(e, (const char *)ctx + (ctx->data_loc_name & 0xFFFF));
	return 0;
}

/* module:module_request fires in __request_module(), in the task whose
 * request made the kernel want a module (a socket family, a filesystem
 * type...), before modprobe runs. Fixed layout: ip, wait, name. */
struct module_request_ctx {
	__u64 common;
	__u64 ip;
	__u8 wait;
	__u8 _pad[3];
	__u32 data_loc_name;
};

/* FNV-1a of a module name (MODULE_NAME_LEN is 56), for the dedup key. */
static __always_inline __u64 name_hash(const char *n, __u32 len)
{
	__u64 h = 0xcbf29ce484222325ULL;
	for (int i = 0; i < 56; i++) {
		if (i >= len)
			break;
		h ^= (__u8)n[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

SEC("tracepoint/module/module_request")
int tapio_sec_module_request(struct module_request_ctx *ctx)
{
	struct tapio_sec_event *e = scratch();
	if (!e)
		return 0;
	set_name_kernel(e, (const char *)ctx + (ctx->data_loc_name & 0xFFFF));
	struct task_struct *task = bpf_get_current_task_btf();
	/* A process asking for a missing family in a loop asks each time:
	 * once per (process, name). */
	if (!first_time(task, TAPIO_SEC_MODULE_REQUEST, name_hash(e->name, e->name_len)))
		return 0;
	tapio_fill_header(&e->hdr, task, TAPIO_EVENT_SEC);
	e->op = TAPIO_SEC_MODULE_REQUEST;
	e->arg0 = ctx->wait;
	emit(e);
	return 0;
}

/* ------------------------------------------------------------------ */
/* File integrity                                                       */

static __always_inline __u32 inode_dev(struct inode *inode)
{
	return BPF_CORE_READ(inode, i_sb, s_dev);
}

/* Filesystems (kernel dev_t) that hold a watched directory: a file on any
 * other filesystem cannot be under one, and skips the parent walk. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u8);
} tapio_sec_watch_devs SEC(".maps");

/* Two readers for the same walks: RD_BTF for BTF pointers (a plain load
 * the verifier turns into a fault-safe one, about a nanosecond), RD_CORE
 * for any other kernel pointer (a bpf_probe_read_kernel call per field,
 * tens of nanoseconds). */
#define RD_BTF(p, field) ((p)->field)
#define RD_CORE(p, field) BPF_CORE_READ(p, field)

/* Is the dentry's inode, or one of its first `depth` ancestors, watched?
 * Returns the watch index + 1 (0: no) and the level in *level. The walk
 * follows d_parent, which never leaves the filesystem, so the device is
 * read once. Per level: two reads, a filter bit, rarely a lookup.
 * DEVS: look the device up in tapio_sec_watch_devs before walking. Worth
 * it where each level is two bpf_probe_read_kernel calls (RD_CORE); with
 * plain loads (RD_BTF) a level costs less than that hash lookup, which
 * found the device on every write to the filesystem of a watched
 * directory (the root filesystem, typically), so the BTF walk goes
 * straight to the filter bits (the watch_ino key holds the device). */
#define DEFINE_WATCHED_DENTRY(fn, RD, DEVS)                                  \
	static __always_inline __u32 fn(struct dentry *d, __u32 depth,       \
					  __u64 *ino_out, __u32 *dev_out,      \
					  __u32 *level)                        \
	{                                                                      \
		struct watch_ino k = {};                                       \
		struct inode *inode = RD(d, d_inode);                          \
		if (!inode)                                                    \
			return 0;                                              \
		k.ino = RD(inode, i_ino);                                      \
		struct super_block *sb = RD(inode, i_sb);                      \
		k.dev = sb ? RD(sb, s_dev) : 0;                                \
		*ino_out = k.ino;                                              \
		*dev_out = k.dev;                                              \
		__u32 zero = 0;                                                \
		struct watch_bits *bits =                                      \
			bpf_map_lookup_elem(&tapio_sec_watch_bits, &zero);     \
		__u32 *w = maybe_watched(bits, k.ino)                          \
				   ? bpf_map_lookup_elem(&tapio_sec_watch_ino, &k) \
				   : 0;                                        \
		if (w) {                                                       \
			*level = 0;                                            \
			return *w + 1;                                         \
		}                                                              \
		if (!depth)                                                    \
			return 0;                                              \
		if (DEVS && !bpf_map_lookup_elem(&tapio_sec_watch_devs, &k.dev)) \
			return 0;                                              \
		for (__u32 i = 1; i <= MAX_FIM_DEPTH; i++) {                   \
			if (i > depth)                                         \
				break;                                         \
			struct dentry *p = RD(d, d_parent);                    \
			if (!p || p == d)                                      \
				break; /* the root of this filesystem */       \
			d = p;                                                 \
			inode = RD(d, d_inode);                                \
			if (!inode)                                            \
				break;                                         \
			k.ino = RD(inode, i_ino);                              \
			if (!maybe_watched(bits, k.ino))                       \
				continue;                                      \
			w = bpf_map_lookup_elem(&tapio_sec_watch_ino, &k);     \
			if (w) {                                               \
				*level = i;                                    \
				return *w + 1;                                 \
			}                                                      \
		}                                                              \
		return 0;                                                      \
	}

DEFINE_WATCHED_DENTRY(watched_dentry, RD_CORE, 1)
DEFINE_WATCHED_DENTRY(watched_dentry_btf, RD_BTF, 0)

/* What an fd-based op's file matched. */
struct fd_hit {
	__u64 ino;
	const unsigned char *name;
	__u32 dev;
	__u32 level;
};

/* Match an open file against the watch set: watch index + 1, or 0. */
#define DEFINE_FILE_WATCHED(fn, RD, walk)                                    \
	static __always_inline __u32 fn(struct file *f, int regular_only,    \
					  __u32 depth, struct fd_hit *h)       \
	{                                                                      \
		struct inode *inode = RD(f, f_inode);                          \
		if (!inode)                                                    \
			return 0;                                              \
		/* Cheapest test first: most writes go to pipes, sockets,     \
		 * ttys. */                                                    \
		if (regular_only && (RD(inode, i_mode) & S_IFMT_) != S_IFREG_) \
			return 0;                                              \
		struct dentry *d = RD(f, f_path.dentry);                       \
		__u32 w = walk(d, depth, &h->ino, &h->dev, &h->level);         \
		if (w)                                                         \
			h->name = RD(d, d_name.name);                          \
		return w;                                                      \
	}

DEFINE_FILE_WATCHED(file_watched, RD_CORE, watched_dentry)
DEFINE_FILE_WATCHED(file_watched_btf, RD_BTF, watched_dentry_btf)

/* fd -> struct file as a BTF pointer, so the whole check above is plain
 * loads. The verifier allows no variable offset on a BTF pointer (the fd
 * index), and bpf_rdonly_cast (6.2+) is a kfunc aya 0.14 cannot relocate;
 * but a task with at most 64 fds (NR_OPEN_DEFAULT) has its table inside
 * files_struct (fdt == &files->fdtab, fd == fd_array), a fixed-size array
 * of struct file pointers: one constant-offset load per fd, chosen by a
 * switch (asm, so clang cannot merge the 64 loads back into one indexed
 * load). *fast = 0: the table has grown, use fd_file(). */
#define FD_ARRAY_LEN 64
#define FD_LOAD(n)                                                             \
	case n:                                                                \
		asm volatile("%0 = *(u64 *)(%1 + %2)" : "=r"(f) : "r"(arr), "i"((n) * 8)); \
		break;
#define FD_LOAD4(n) FD_LOAD(n) FD_LOAD(n + 1) FD_LOAD(n + 2) FD_LOAD(n + 3)
#define FD_LOAD16(n) FD_LOAD4(n) FD_LOAD4(n + 4) FD_LOAD4(n + 8) FD_LOAD4(n + 12)

static __always_inline struct file *fd_file_btf(struct task_struct *task, __u64 fd, int *fast)
{
	*fast = 0;
	struct files_struct *files = task->files;
	if (!files || fd >= FD_ARRAY_LEN ||
	    bpf_core_field_size(files->fd_array) != FD_ARRAY_LEN * sizeof(void *))
		return 0;
	if (files->fdt != &files->fdtab)
		return 0;
	*fast = 1;
	struct file **arr = files->fd_array;
	struct file *f = 0;
	switch (fd) {
	FD_LOAD16(0)
	FD_LOAD16(16)
	FD_LOAD16(32)
	FD_LOAD16(48)
	}
	return f;
}

/* fd-based file op: match the open file against the watch set. */
static __always_inline int fd_op_enter(struct sys_enter_ctx *ctx, __u32 op, int regular_only)
{
	__u64 fd = ctx->args[0];
	struct task_struct *task = bpf_get_current_task_btf();
	struct fd_hit h = {};
	__u32 depth = cfg(CFG_FIM_DEPTH);
	__u32 w;
	int fast;
	__u32 fmode;
	struct file *fb = fd_file_btf(task, fd, &fast);
	if (fast) {
		if (!fb)
			return 0;
		w = file_watched_btf(fb, regular_only, depth, &h);
		fmode = w ? fb->f_mode : 0;
	} else {
		struct file *f = fd_file(task, fd);
		if (!f)
			return 0;
		w = file_watched(f, regular_only, depth, &h);
		fmode = w ? BPF_CORE_READ(f, f_mode) : 0;
	}
	if (!w)
		return 0;
	__u64 ino = h.ino;
	__u32 dev = h.dev, level = h.level;
	__u64 suppressed = 0;
	if (op == TAPIO_SEC_FILE_WRITE) {
		/* Not open for writing: the kernel refuses it (EBADF) before
		 * it touches the file, and it is not reported (the write is
		 * reported at entry, see below). */
		if (!(fmode & FMODE_WRITE_))
			return 0;
		/* One record per (process, file) per window; the next record
		 * says how many writes it stands for. */
		struct write_key wk = { .ino = ino, .dev = dev, .tgid = self_tgid() };
		__u64 now = bpf_ktime_get_boot_ns();
		struct write_seen *s = bpf_map_lookup_elem(&tapio_sec_writes, &wk);
		if (s && now - s->last_ns < cfg(CFG_WRITE_WINDOW)) {
			__sync_fetch_and_add(&s->suppressed, 1);
			return 0;
		}
		if (s) {
			suppressed = s->suppressed;
			s->suppressed = 0;
			s->last_ns = now;
		} else {
			struct write_seen n = { .last_ns = now };
			if (bpf_map_update_elem(&tapio_sec_writes, &wk, &n, BPF_ANY))
				tapio_count_lost(&tapio_lost, TAPIO_LOST_MAP_FULL);
		}
	}
	struct tapio_sec_event *e = scratch();
	if (!e)
		return 0;
	e->op = op;
	e->syscall_nr = ctx->nr;
	e->flags = TAPIO_SEC_BY_FD;
	e->watch = w - 1;
	e->ino = ino;
	e->dev = dev;
	e->arg0 = fd;
	e->arg1 = op == TAPIO_SEC_FILE_WRITE ? suppressed : ctx->args[1];
	e->arg2 = op == TAPIO_SEC_FILE_CHOWN ? ctx->args[2] : level;
	set_name_kernel(e, h.name);
	if (op == TAPIO_SEC_FILE_WRITE) {
		/* A write is reported as it enters, as file-integrity hooks at
		 * the permission check do: no exit program runs for the write
		 * family, whose exit tracepoint was the largest part of what an
		 * unwatched write paid (README, "Security probe: syscall hot
		 * loops"). What the exit added is the outcome; a write to a
		 * file open for writing rarely fails (ENOSPC, EDQUOT, EIO, a
		 * signal), and an attempt on a watched file is worth telling. */
		tapio_fill_header(&e->hdr, task, TAPIO_EVENT_SEC);
		emit(e);
		return 0;
	}
	park(e);
	return 0;
}

/* write, pwrite64, writev, pwritev, pwritev2 */
static __always_inline int tapio_sec_write_enter_body(struct sys_enter_ctx *ctx)
{
	return fd_op_enter(ctx, TAPIO_SEC_FILE_WRITE, 1);
}
SYSCALL_TP(sys_enter_write, tapio_sec_write_enter)

static __always_inline int tapio_sec_ftruncate_enter_body(struct sys_enter_ctx *ctx)
{
	return fd_op_enter(ctx, TAPIO_SEC_FILE_TRUNCATE, 1);
}
SYSCALL_TP(sys_enter_ftruncate, tapio_sec_ftruncate_enter)

static __always_inline int tapio_sec_fchmod_enter_body(struct sys_enter_ctx *ctx)
{
	return fd_op_enter(ctx, TAPIO_SEC_FILE_CHMOD, 0);
}
SYSCALL_TP(sys_enter_fchmod, tapio_sec_fchmod_enter)

static __always_inline int tapio_sec_fchown_enter_body(struct sys_enter_ctx *ctx)
{
	return fd_op_enter(ctx, TAPIO_SEC_FILE_CHOWN, 0);
}
SYSCALL_TP(sys_enter_fchown, tapio_sec_fchown_enter)

/* open/openat with O_TRUNC: the file is known only once the kernel
 * resolved the path, so the exit program matches the new fd. (O_CREAT
 * alone is not reported: the exit cannot tell a created file from an
 * existing one; the first write to a new file is.) */
static __always_inline int open_enter(struct sys_enter_ctx *ctx, __u64 flags)
{
	if (!(flags & O_TRUNC_))
		return 0;
	struct tapio_sec_event *e = scratch();
	if (!e)
		return 0;
	e->op = TAPIO_SEC_FILE_TRUNCATE;
	e->syscall_nr = ctx->nr;
	e->flags = TAPIO_SEC_FROM_OPEN;
	e->arg1 = flags;
	park(e);
	return 0;
}

static __always_inline int tapio_sec_openat_enter_body(struct sys_enter_ctx *ctx)
{
	return open_enter(ctx, ctx->args[2]);
}
SYSCALL_TP(sys_enter_openat, tapio_sec_openat_enter)

static __always_inline int tapio_sec_open_enter_body(struct sys_enter_ctx *ctx)
{
	return open_enter(ctx, ctx->args[1]);
}
SYSCALL_TP(sys_enter_open, tapio_sec_open_enter)

/* Directory a path argument starts from: root for absolute paths, the
 * cwd for AT_FDCWD, else the directory open at dfd. */
static __always_inline struct dentry *start_dir(struct task_struct *task, __s64 dfd, char first)
{
	if (first == '/')
		return BPF_CORE_READ(task, fs, root.dentry);
	if (dfd == AT_FDCWD_)
		return BPF_CORE_READ(task, fs, pwd.dentry);
	struct file *f = fd_file(task, dfd);
	return f ? BPF_CORE_READ(f, f_path.dentry) : 0;
}

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

struct hash_walk {
	struct tapio_sec_event *e;
	struct watch_rel key;
	__u64 h;
	__u32 pos;
	__u32 len;
	__u32 found; /* watch index + 1 */
	__u32 any;
};

/* One character of the path: hash it; at a '/' look the prefix up. */
static long hash_step(__u64 idx, void *data)
{
	struct hash_walk *hw = data;
	__u32 at = hw->pos + (__u32)idx;
	if (at >= hw->len || at >= TAPIO_PATH_LEN)
		return 1;
	/* Restate the bound where the verifier sees it: clang drops a mask
	 * it can prove redundant, the verifier cannot prove it. */
	asm volatile("%0 &= 255" : "+r"(at));
	char c = hw->e->name[at];
	if (c == '/' && hw->any) {
		hw->key.hash = hw->h;
		__u32 *w = bpf_map_lookup_elem(&tapio_sec_watch_rel, &hw->key);
		if (w) {
			hw->found = *w + 1;
			return 1;
		}
	}
	hw->h ^= (__u8)c;
	hw->h *= FNV_PRIME;
	hw->any = 1;
	return 0;
}

/* Match the path in e->name (read from the caller) against the watch
 * set, starting at directory `dir`. Returns watch index + 1, or 0. */
static __always_inline __u32 match_path(struct tapio_sec_event *e, struct dentry *dir)
{
	struct inode *inode = BPF_CORE_READ(dir, d_inode);
	if (!inode)
		return 0;
	struct watch_rel k = {
		.ino = BPF_CORE_READ(inode, i_ino),
		.dev = inode_dev(inode),
	};
	__u32 len = e->name_len;
	__u32 i = 0;
	/* Skip leading '/' and "./": both mean the start directory. */
	for (int s = 0; s < 8; s++) {
		if (i + 1 < len && e->name[i & (TAPIO_PATH_LEN - 1)] == '.' &&
		    e->name[(i + 1) & (TAPIO_PATH_LEN - 1)] == '/')
			i += 2;
		else if (i < len && e->name[i & (TAPIO_PATH_LEN - 1)] == '/')
			i += 1;
		else
			break;
	}
	struct hash_walk hw = { .e = e, .key = k, .h = FNV_OFFSET, .pos = i, .len = len };
	/* bpf_loop (5.17+): the verifier checks the body once instead of
	 * once per character, which a 256-step loop with a map lookup per
	 * '/' would need (it blows the 1M-instruction budget). */
	bpf_loop(TAPIO_PATH_LEN, hash_step, &hw, 0);
	if (hw.found)
		return hw.found;
	if (!hw.any)
		return 0;
	hw.key.hash = hw.h;
	__u32 *w = bpf_map_lookup_elem(&tapio_sec_watch_rel, &hw.key);
	return w ? *w + 1 : 0;
}

/* Path-based file op: read the path, match it from its start directory;
 * a relative path from inside a watched directory matches too. */
static __always_inline __u32 path_matches(struct tapio_sec_event *e, struct task_struct *task,
					  __s64 dfd, const char *upath)
{
	e->flags &= ~TAPIO_SEC_NAME_TRUNCATED;
	set_name_user(e, upath);
	if (e->name_len == 0)
		return 0;
	struct dentry *dir = start_dir(task, dfd, e->name[0]);
	if (!dir)
		return 0;
	__u32 w = match_path(e, dir);
	if (w)
		return w;
	if (e->name[0] != '/') {
		__u64 ino;
		__u32 dev, level;
		/* the start dir itself or an ancestor is a watched directory */
		w = watched_dentry(dir, cfg(CFG_FIM_DEPTH), &ino, &dev, &level);
		if (w)
			e->arg2 = level + 1;
	}
	return w;
}

static __always_inline int path_op_enter(struct sys_enter_ctx *ctx, __u32 op, __s64 dfd,
					 const char *upath, __u64 arg1, __u64 arg2)
{
	struct tapio_sec_event *e = scratch();
	if (!e)
		return 0;
	__u32 w = path_matches(e, bpf_get_current_task_btf(), dfd, upath);
	if (!w)
		return 0;
	e->op = op;
	e->syscall_nr = ctx->nr;
	e->watch = w - 1;
	e->arg0 = op == TAPIO_SEC_FILE_TRUNCATE ? arg1 : 0;
	e->arg1 = arg1;
	e->arg2 = op == TAPIO_SEC_FILE_CHOWN ? arg2 : e->arg2;
	park(e);
	return 0;
}

/* unlink(path), rmdir(path) */
static __always_inline int tapio_sec_unlink_enter_body(struct sys_enter_ctx *ctx)
{
	return path_op_enter(ctx, TAPIO_SEC_FILE_UNLINK, AT_FDCWD_, (const char *)ctx->args[0], 0, 0);
}
SYSCALL_TP(sys_enter_unlink, tapio_sec_unlink_enter)

/* unlinkat(dfd, path, flags) */
static __always_inline int tapio_sec_unlinkat_enter_body(struct sys_enter_ctx *ctx)
{
	return path_op_enter(ctx, TAPIO_SEC_FILE_UNLINK, (__s32)ctx->args[0],
			     (const char *)ctx->args[1], 0, 0);
}
SYSCALL_TP(sys_enter_unlinkat, tapio_sec_unlinkat_enter)

/* chmod(path, mode) */
static __always_inline int tapio_sec_chmod_enter_body(struct sys_enter_ctx *ctx)
{
	return path_op_enter(ctx, TAPIO_SEC_FILE_CHMOD, AT_FDCWD_, (const char *)ctx->args[0],
			     ctx->args[1], 0);
}
SYSCALL_TP(sys_enter_chmod, tapio_sec_chmod_enter)

/* fchmodat(dfd, path, mode), fchmodat2(dfd, path, mode, flags) */
static __always_inline int tapio_sec_fchmodat_enter_body(struct sys_enter_ctx *ctx)
{
	return path_op_enter(ctx, TAPIO_SEC_FILE_CHMOD, (__s32)ctx->args[0],
			     (const char *)ctx->args[1], ctx->args[2], 0);
}
SYSCALL_TP(sys_enter_fchmodat, tapio_sec_fchmodat_enter)

/* chown(path, uid, gid), lchown(path, uid, gid) */
static __always_inline int tapio_sec_chown_enter_body(struct sys_enter_ctx *ctx)
{
	return path_op_enter(ctx, TAPIO_SEC_FILE_CHOWN, AT_FDCWD_, (const char *)ctx->args[0],
			     ctx->args[1], ctx->args[2]);
}
SYSCALL_TP(sys_enter_chown, tapio_sec_chown_enter)

/* fchownat(dfd, path, uid, gid, flags) */
static __always_inline int tapio_sec_fchownat_enter_body(struct sys_enter_ctx *ctx)
{
	return path_op_enter(ctx, TAPIO_SEC_FILE_CHOWN, (__s32)ctx->args[0],
			     (const char *)ctx->args[1], ctx->args[2], ctx->args[3]);
}
SYSCALL_TP(sys_enter_fchownat, tapio_sec_fchownat_enter)

/* truncate(path, length) */
static __always_inline int tapio_sec_truncate_enter_body(struct sys_enter_ctx *ctx)
{
	return path_op_enter(ctx, TAPIO_SEC_FILE_TRUNCATE, AT_FDCWD_, (const char *)ctx->args[0],
			     ctx->args[1], 0);
}
SYSCALL_TP(sys_enter_truncate, tapio_sec_truncate_enter)

/* Renames: the source path (a watched file moved away) or the target
 * path (a watched file replaced: the editor's and the attacker's way of
 * writing a file atomically). */
static __always_inline int rename_enter(struct sys_enter_ctx *ctx, __s64 odfd, const char *old,
					__s64 ndfd, const char *new)
{
	struct tapio_sec_event *e = scratch();
	if (!e)
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 w = path_matches(e, task, odfd, old);
	if (!w) {
		e->arg2 = 0;
		w = path_matches(e, task, ndfd, new);
		if (!w)
			return 0;
		e->flags |= TAPIO_SEC_RENAME_TARGET;
	}
	e->op = TAPIO_SEC_FILE_RENAME;
	e->syscall_nr = ctx->nr;
	e->watch = w - 1;
	park(e);
	return 0;
}

/* rename(old, new) */
static __always_inline int tapio_sec_rename_enter_body(struct sys_enter_ctx *ctx)
{
	return rename_enter(ctx, AT_FDCWD_, (const char *)ctx->args[0], AT_FDCWD_,
			    (const char *)ctx->args[1]);
}
SYSCALL_TP(sys_enter_rename, tapio_sec_rename_enter)

/* renameat(odfd, old, ndfd, new), renameat2(odfd, old, ndfd, new, flags) */
static __always_inline int tapio_sec_renameat_enter_body(struct sys_enter_ctx *ctx)
{
	return rename_enter(ctx, (__s32)ctx->args[0], (const char *)ctx->args[1],
			    (__s32)ctx->args[2], (const char *)ctx->args[3]);
}
SYSCALL_TP(sys_enter_renameat, tapio_sec_renameat_enter)

/* ------------------------------------------------------------------ */
/* The shared exit: add the result, emit what the enter half parked.    */

static __always_inline int open_exit(struct tapio_sec_event *e, __s64 ret)
{
	if (ret < 0)
		return 0;
	struct file *f = fd_file(bpf_get_current_task_btf(), ret);
	if (!f)
		return 0;
	struct dentry *d = BPF_CORE_READ(f, f_path.dentry);
	__u64 ino = 0;
	__u32 dev = 0, level = 0;
	__u32 w = watched_dentry(d, cfg(CFG_FIM_DEPTH), &ino, &dev, &level);
	if (!w)
		return 0;
	e->watch = w - 1;
	e->ino = ino;
	e->dev = dev;
	e->arg0 = ret;
	e->arg2 = level;
	e->flags |= TAPIO_SEC_BY_FD;
	set_name_kernel(e, BPF_CORE_READ(d, d_name.name));
	return 1;
}

static __always_inline int exit_common(__s64 ret)
{
	struct tapio_sec_event *e = parked();
	if (!e)
		return 0;
	int keep;
	switch (e->op) {
	case TAPIO_SEC_PTRACE:
	case TAPIO_SEC_VM_WRITEV:
	case TAPIO_SEC_MODULE_LOAD:
	case TAPIO_SEC_BPF_LOAD:
		keep = 1; /* attempts matter: a refusal carries its errno */
		break;
	case TAPIO_SEC_MEMORY_WX:
		keep = ret >= 0 || ret < -4095; /* mmap returns an address */
		if (keep && e->arg3)
			e->arg0 = ret; /* mmap: where it landed */
		break;
	default:
		if (e->flags & TAPIO_SEC_FROM_OPEN)
			keep = open_exit(e, ret);
		else
			keep = ret >= 0; /* a file op that failed changed nothing */
	}
	if (keep) {
		e->ret = ret;
		tapio_fill_header_current(&e->hdr, TAPIO_EVENT_SEC);
		emit(e);
	}
	unpark(e);
	return 0;
}

/* One exit program per family, so a family that is off in the config
 * adds no hook. */
SEC("tracepoint/syscalls/sys_exit_ptrace")
int tapio_sec_exit_inject(struct sys_exit_ctx *ctx)
{
	return exit_common(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_bpf")
int tapio_sec_exit_bpf(struct sys_exit_ctx *ctx)
{
	return exit_common(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_finit_module")
int tapio_sec_exit_module(struct sys_exit_ctx *ctx)
{
	return exit_common(ctx->ret);
}

/* The file family's exits (ftruncate, fchmod, fchown, the opens, unlink,
 * chmod, chown, truncate, rename): not the writes, reported at entry. */
SEC("tracepoint/syscalls/sys_exit_ftruncate")
int tapio_sec_exit_file(struct sys_exit_ctx *ctx)
{
	return exit_common(ctx->ret);
}

/* ------------------------------------------------------------------ */
/* exec of a memfd (or any file with no name left on a tmpfs)          */

static __always_inline int memfd_exec(struct task_struct *task, struct file *file)
{
	if (!file)
		return 0;
	struct inode *inode = BPF_CORE_READ(file, f_inode);
	if (!inode)
		return 0;
	__u64 magic = BPF_CORE_READ(inode, i_sb, s_magic);
	if (magic != TMPFS_MAGIC_ && magic != HUGETLBFS_MAGIC_)
		return 0;
	/* memfds are never linked into a directory; a tmpfs file that was
	 * unlinked after being opened is just as fileless. */
	if (BPF_CORE_READ(inode, __i_nlink) != 0)
		return 0;
	struct tapio_sec_event *e = scratch();
	if (!e)
		return 0;
	tapio_fill_header(&e->hdr, task, TAPIO_EVENT_SEC);
	e->op = TAPIO_SEC_MEMFD_EXEC;
	e->arg0 = magic;
	e->ino = BPF_CORE_READ(inode, i_ino);
	e->dev = inode_dev(inode);
	set_name_kernel(e, BPF_CORE_READ(file, f_path.dentry, d_name.name));
	if (e->name_len >= 6 && e->name[0] == 'm' && e->name[1] == 'e' && e->name[2] == 'm' &&
	    e->name[3] == 'f' && e->name[4] == 'd' && e->name[5] == ':')
		e->flags |= TAPIO_SEC_MEMFD_NAMED;
	emit(e);
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(tapio_sec_exec_btf, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	return memfd_exec(p, BPF_CORE_READ(bprm, file));
}

/* Classic tracepoint: the record has no file, but by now the new image
 * is mm->exe_file (set by begin_new_exec before this tracepoint). */
SEC("tracepoint/sched/sched_process_exec")
int tapio_sec_exec_tp(void *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	return memfd_exec(task, BPF_CORE_READ(task, mm, exe_file));
}

/* ------------------------------------------------------------------ */
/* The syscall dispatcher: one tp_btf sys_enter/sys_exit pair for every  */
/* hooked syscall instead of one tracepoint program per syscall.        */

/* Handler by syscall number (enum tapio_sec_syscall), filled by userspace
 * after load with the configured families only: until then, and for any
 * other syscall, one array lookup and return. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, TAPIO_SEC_SYSCALL_MAX);
	__type(key, __u32);
	__type(value, __u32);
} tapio_sec_syscalls SEC(".maps");

/* arch/x86/include/asm/thread_info.h: set in thread_info.status while a
 * 32-bit (int $0x80, sysenter, 32-bit syscall) call runs, i.e.
 * in_ia32_syscall(). Its number is then from the i386 table (4 is write
 * there, stat here), so it must not be read as an x86_64 number; the
 * per-syscall tracepoints skip compat calls the same way. */
#define TS_COMPAT_ 0x0002

static __always_inline __u32 syscall_handler(long nr)
{
	if ((__u64)nr >= TAPIO_SEC_SYSCALL_MAX)
		return 0; /* -1 (no syscall) and x32 (bit 30) included */
	__u32 k = nr;
	__u32 *h = bpf_map_lookup_elem(&tapio_sec_syscalls, &k);
	if (!h || !*h)
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	if (task->thread_info.status & TS_COMPAT_)
		return 0;
	return *h;
}

/* raw sys_enter(regs, id): the arguments are the user registers, in the
 * x86_64 syscall order (syscall_get_arguments). */
SEC("tp_btf/sys_enter")
int BPF_PROG(tapio_sec_sys_enter, struct pt_regs *regs, long id)
{
	__u32 h = syscall_handler(id);
	if (!h)
		return 0;
	if (h == TAPIO_SEC_SYS_CRED)
		return cred_enter();
	struct sys_enter_ctx c = {
		.nr = id,
		.args = { regs->di, regs->si, regs->dx, regs->r10, regs->r8, regs->r9 },
	};
	switch (h) {
	case TAPIO_SEC_SYS_PTRACE:
		return tapio_sec_ptrace_enter_body(&c);
	case TAPIO_SEC_SYS_VM_WRITEV:
		return tapio_sec_vm_writev_enter_body(&c);
	case TAPIO_SEC_SYS_MMAP:
		return tapio_sec_mmap_enter_body(&c);
	case TAPIO_SEC_SYS_MPROTECT:
		return tapio_sec_mprotect_enter_body(&c);
	case TAPIO_SEC_SYS_BPF:
		return tapio_sec_bpf_enter_body(&c);
	case TAPIO_SEC_SYS_INIT_MODULE:
		return tapio_sec_init_module_enter_body(&c);
	case TAPIO_SEC_SYS_FINIT_MODULE:
		return tapio_sec_finit_module_enter_body(&c);
	case TAPIO_SEC_SYS_WRITE:
		return tapio_sec_write_enter_body(&c);
	case TAPIO_SEC_SYS_FTRUNCATE:
		return tapio_sec_ftruncate_enter_body(&c);
	case TAPIO_SEC_SYS_FCHMOD:
		return tapio_sec_fchmod_enter_body(&c);
	case TAPIO_SEC_SYS_FCHOWN:
		return tapio_sec_fchown_enter_body(&c);
	case TAPIO_SEC_SYS_OPENAT:
		return tapio_sec_openat_enter_body(&c);
	case TAPIO_SEC_SYS_OPEN:
		return tapio_sec_open_enter_body(&c);
	case TAPIO_SEC_SYS_UNLINK:
		return tapio_sec_unlink_enter_body(&c);
	case TAPIO_SEC_SYS_UNLINKAT:
		return tapio_sec_unlinkat_enter_body(&c);
	case TAPIO_SEC_SYS_CHMOD:
		return tapio_sec_chmod_enter_body(&c);
	case TAPIO_SEC_SYS_FCHMODAT:
		return tapio_sec_fchmodat_enter_body(&c);
	case TAPIO_SEC_SYS_CHOWN:
		return tapio_sec_chown_enter_body(&c);
	case TAPIO_SEC_SYS_FCHOWNAT:
		return tapio_sec_fchownat_enter_body(&c);
	case TAPIO_SEC_SYS_TRUNCATE:
		return tapio_sec_truncate_enter_body(&c);
	case TAPIO_SEC_SYS_RENAME:
		return tapio_sec_rename_enter_body(&c);
	case TAPIO_SEC_SYS_RENAMEAT:
		return tapio_sec_renameat_enter_body(&c);
	}
	return 0;
}

/* raw sys_exit(regs, ret): the number is orig_ax, as the per-syscall exit
 * tracepoints read it (syscall_get_nr). */
SEC("tp_btf/sys_exit")
int BPF_PROG(tapio_sec_sys_exit, struct pt_regs *regs, long ret)
{
	long nr = regs->orig_ax;
	__u32 h = syscall_handler(nr);
	if (!h)
		return 0;
	if (h == TAPIO_SEC_SYS_CRED)
		return cred_exit(nr);
	return exit_common(ret);
}
