/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A task's cgroup v2 directory names, for container.id / k8s.pod.uid.
 * Shared by the probes that attribute a record to a workload the kernel
 * may destroy before userspace could ask /proc (exec of a short-lived
 * process, an OOM victim). BPF side only; include after tapio_bpf.h.
 */
#ifndef TAPIO_CGROUP_H
#define TAPIO_CGROUP_H

/* kernfs_node.parent was renamed __parent in 6.15; read whichever exists. */
struct kernfs_node___pre615 {
	struct kernfs_node *parent;
} __attribute__((preserve_access_index));

static __always_inline struct kernfs_node *tapio_kn_parent(struct kernfs_node *kn)
{
	if (bpf_core_field_exists(kn->__parent))
		return BPF_CORE_READ(kn, __parent);
	return BPF_CORE_READ((struct kernfs_node___pre615 *)kn, parent);
}

/*
 * Copy the names of `task`'s cgroup v2 directory and of its parent into
 * `leaf` and `parent` (TAPIO_CGROUP_NAME_LEN each, NUL-terminated).
 * Container runtimes put the container id in the leaf and the pod uid in
 * the parent. Callers terminate both first: a name that cannot be read
 * stays empty.
 */
static __always_inline void tapio_read_cgroup_names(char *leaf, char *parent,
						    struct task_struct *task)
{
	struct kernfs_node *kn = BPF_CORE_READ(task, cgroups, dfl_cgrp, kn);
	if (!kn)
		return;
	bpf_probe_read_kernel_str(leaf, TAPIO_CGROUP_NAME_LEN, BPF_CORE_READ(kn, name));
	struct kernfs_node *up = tapio_kn_parent(kn);
	if (!up)
		return;
	bpf_probe_read_kernel_str(parent, TAPIO_CGROUP_NAME_LEN, BPF_CORE_READ(up, name));
}

#endif /* TAPIO_CGROUP_H */
