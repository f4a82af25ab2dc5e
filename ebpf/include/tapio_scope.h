/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * probes.scope: record only tasks in one cgroup v2 subtree, decided here
 * before a ring-buffer reserve, so out-of-scope events cost no ring space,
 * no userspace CPU and no export slot. BPF side only; include after
 * tapio_bpf.h.
 *
 * Userspace sets both globals before load (0: no scope, every task). The
 * id is the scope directory's cgroup id (its inode number on cgroup2) and
 * the level its depth below the cgroup2 root, so "in scope" is "my
 * ancestor at that level is it": one helper call, no walk.
 */
#ifndef TAPIO_SCOPE_H
#define TAPIO_SCOPE_H

const volatile __u64 tapio_scope_cgroup = 0;
const volatile __u32 tapio_scope_level = 0;

/* Is a scope set? Read first by every check: unset, it is one branch on a
 * constant the verifier folds away. */
static __always_inline int tapio_scoped(void)
{
	return tapio_scope_cgroup != 0;
}

/* The current task is in scope. Only where current is the subject
 * (process context), never in softirq. */
static __always_inline int tapio_current_in_scope(void)
{
	if (!tapio_scoped())
		return 1;
	return bpf_get_current_ancestor_cgroup_id(tapio_scope_level) == tapio_scope_cgroup;
}

/* `cg` (a cgroup v2 cgroup) is the scope or below it. */
static __always_inline int tapio_cgroup_in_scope(const struct cgroup *cg)
{
	if (!tapio_scoped())
		return 1;
	if (!cg || !bpf_core_field_exists(cg->ancestors))
		return 0;
	__u32 level = tapio_scope_level;
	if (BPF_CORE_READ(cg, level) < (int)level || level > 255)
		return 0;
	struct cgroup *anc = NULL;
	const void *slot = (const void *)cg + bpf_core_field_offset(struct cgroup, ancestors) +
			   level * sizeof(struct cgroup *);
	if (bpf_probe_read_kernel(&anc, sizeof(anc), slot) || !anc)
		return 0;
	return BPF_CORE_READ(anc, kn, id) == tapio_scope_cgroup;
}

/* A socket is in scope when the cgroup it was created in is: the subject
 * of events seen where current is not its owner (softirq). An accepted
 * socket inherits its listener's cgroup. */
static __always_inline int tapio_sock_in_scope(const struct sock *sk)
{
	if (!tapio_scoped())
		return 1;
	return tapio_cgroup_in_scope(BPF_CORE_READ(sk, sk_cgrp_data.cgroup));
}

#endif /* TAPIO_SCOPE_H */
