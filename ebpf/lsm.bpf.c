// SPDX-License-Identifier: GPL-2.0-only
/*
 * Policy enforcement. Rules come from config through maps; each decision
 * (deny = -EPERM, audit = allow) is counted per rule and reported.
 *
 * Two families of programs, loaded separately so a kernel that refuses one
 * still runs the other:
 *   cgroup hooks (any kernel with cgroup v2, including ones that refuse BPF
 *   LSM): connect4/6 + sendmsg4/6 (connect rules), bind4/6, sock_create,
 *   dev. Attached to the cgroup v2 root, so every process is covered; a
 *   rule's `cgroup` narrows it.
 *   BPF LSM (kernels with CONFIG_BPF_LSM and "bpf" in the LSM list):
 *   file_open, bprm_check_security, ptrace_access_check, kernel_read_file +
 *   kernel_load_data + kernel_module_request (modules), bpf, and the
 *   path_* hooks (+ file_truncate) of file_modify rules.
 *
 * Rule lookup is by map key, never a scan, so 10,000 rules cost what one
 * does: network rules in an LPM trie keyed (hook, protocol, port, address)
 * looked up with exact and "any" protocol/port, and for each of those
 * every prefix that holds the address, longest first (each entry names its
 * own length, so the next lookup asks for a shorter one); file rules by
 * (hook, dev, inode) of the file and, for subtree rules, of each parent
 * directory (bounded walk); devices by (type, major, minor); socket
 * creation by (family, type), with "any" for either or both; module and
 * bpf rules by hook. Rules sharing a key chain in config order, each
 * checked for its cgroup, uid and comm.
 *
 * Policy is double-buffered like the XDP filter's: lsm_active[0] picks the
 * generation, userspace fills the other one and flips it.
 */
#include "tapio_bpf.h"

TAPIO_PROBE_MAPS();

typedef struct tapio_lsm_decision tapio_lsm_decision;
typedef struct tapio_lsm_rule tapio_lsm_rule;
TAPIO_ABI_BTF(tapio_lsm_decision);
TAPIO_ABI_BTF(tapio_lsm_rule);

#define EPERM 1
#define MAX_CHAIN TAPIO_LSM_MAX_CHAIN
/* Prefix lengths of an LPM key: 32 bits of (hook, proto, port) + 0..128
 * address bits. */
#define MAX_PREFIXES 129
#define MAX_PARENTS 16
#define ANY_U32 0xffffffffU
#define BPF_PROG_LOAD_CMD 5

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * TAPIO_LSM_MAX_RULES);
	__type(key, __u32);
	__type(value, struct tapio_lsm_rule);
} lsm_rules SEC(".maps");

/* Decisions per rule slot (generation * MAX + index). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2 * TAPIO_LSM_MAX_RULES);
	__type(key, __u32);
	__type(value, __u64);
} lsm_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} lsm_active SEC(".maps");

/* Processes no rule applies to unless it says so: Tapio itself, as host
 * tgid -> the cgroup id it runs in. Both must hold, so a process that later
 * gets a dead Tapio's pid is not exempt unless it is in Tapio's cgroup.
 * Under `on_exit: keep` this map is pinned, and the next Tapio rewrites it
 * before it loads anything, so the programs a dead Tapio left exempt the
 * new one (a `bpf` deny cannot stop it loading). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} lsm_exempt SEC(".maps");

/* Tapio's tgid as the kernel sees it (a pid namespace hides it from
 * getpid()): userspace sets `nonce`, calls prctl(TAPIO_WHOAMI, nonce) once
 * with tapio_lsm_whoami attached, and reads `tgid` and `cgroup_id`. */
struct whoami {
	__u64 nonce;     /* set by userspace, never 0 */
	__u64 cgroup_id; /* of the caller */
	__u32 tgid;      /* of the caller, in the initial pid namespace */
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct whoami);
} lsm_whoami SEC(".maps");

struct net_key {
	__u32 prefixlen; /* 32 + address bits */
	__u8 hook;
	__u8 proto;
	__u16 port; /* network order; 0 = any */
	__u8 addr[16];
};

/* An LPM entry: its chain, and its own prefix length (a lookup for a
 * shorter prefix than this reaches the next entry holding the address). */
struct net_val {
	__u32 first; /* rule index + 1 */
	__u32 prefixlen;
};

struct inode_key {
	__u32 hook;
	__u32 dev;
	__u64 ino;
};

struct sock_key {
	__u32 family; /* 0 = any */
	__u32 type;   /* 0 = any */
};

struct dev_key {
	__u32 type; /* BPF_DEVCG_DEV_CHAR / _BLOCK */
	__u32 major;
	__u32 minor; /* ANY_U32 = any */
	__u32 _pad;
};

#define GEN_MAPS(g)                                                            \
	struct {                                                               \
		__uint(type, BPF_MAP_TYPE_LPM_TRIE);                           \
		__uint(max_entries, TAPIO_LSM_MAX_RULES);                      \
		__uint(map_flags, BPF_F_NO_PREALLOC);                          \
		__type(key, struct net_key);                                   \
		__type(value, struct net_val);                                 \
	} lsm_net_##g SEC(".maps");                                            \
	struct {                                                               \
		__uint(type, BPF_MAP_TYPE_HASH);                               \
		__uint(max_entries, TAPIO_LSM_MAX_RULES);                      \
		__type(key, struct inode_key);                                 \
		__type(value, __u32);                                          \
	} lsm_inode_##g SEC(".maps");                                          \
	struct {                                                               \
		__uint(type, BPF_MAP_TYPE_HASH);                               \
		__uint(max_entries, 1024);                                     \
		__type(key, struct sock_key);                                  \
		__type(value, __u32);                                          \
	} lsm_sock_##g SEC(".maps");                                           \
	struct {                                                               \
		__uint(type, BPF_MAP_TYPE_HASH);                               \
		__uint(max_entries, 4096);                                     \
		__type(key, struct dev_key);                                   \
		__type(value, __u32);                                          \
	} lsm_dev_##g SEC(".maps");                                            \
	struct {                                                               \
		__uint(type, BPF_MAP_TYPE_ARRAY);                              \
		__uint(max_entries, TAPIO_LSM_HOOK_MAX);                       \
		__type(key, __u32);                                            \
		__type(value, __u32);                                          \
	} lsm_any_##g SEC(".maps");                                            \
	/* Per hook: enum tapio_lsm_hook_flags (0: no rules, skip it all). */  \
	struct {                                                               \
		__uint(type, BPF_MAP_TYPE_ARRAY);                              \
		__uint(max_entries, TAPIO_LSM_HOOK_MAX);                       \
		__type(key, __u32);                                            \
		__type(value, __u32);                                          \
	} lsm_info_##g SEC(".maps")

GEN_MAPS(0);
GEN_MAPS(1);

static __always_inline __u32 generation(void)
{
	__u32 zero = 0;
	__u32 *g = bpf_map_lookup_elem(&lsm_active, &zero);
	return g && *g ? 1 : 0;
}

/* Which lookups a hook needs in generation `gen` (0: it has no rules). */
static __always_inline __u32 hook_flags(__u32 gen, __u32 hook)
{
	__u32 *f = gen ? bpf_map_lookup_elem(&lsm_info_1, &hook) : bpf_map_lookup_elem(&lsm_info_0, &hook);
	return f ? *f : 0;
}

/* What a decision reports besides the process. */
struct subject {
	__u64 ino;
	__u32 dev, port, family, proto, major, minor, access, target_pid;
	__u8 addr[16];
};

/* Fill the header from helpers every program type here may call (cgroup
 * programs cannot read task_struct). */
static __always_inline void fill_hdr(struct tapio_event_header *h)
{
	__u64 pt = bpf_get_current_pid_tgid();
	__u64 ug = bpf_get_current_uid_gid();
	h->ts_ns = bpf_ktime_get_boot_ns();
	h->kind = TAPIO_EVENT_LSM_DECISION;
	h->pid = pt >> 32;
	h->tid = (__u32)pt;
	h->ppid = 0;
	h->uid = (__u32)ug;
	h->gid = ug >> 32;
	h->cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(h->comm, sizeof(h->comm));
}

static __always_inline int comm_eq(const char *a, const char *b)
{
	for (int i = 0; i < TAPIO_COMM_LEN; i++) {
		if (a[i] != b[i])
			return 0;
		if (!a[i])
			return 1;
	}
	return 1;
}

/* Containers named by rules: FNV-1a 64 of the 64 lowercase hex digits of
 * the id -> slot + 1 (userspace, stable across policy generations). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u32);
} lsm_container_ids SEC(".maps");

/* Cgroups that belong to such a container -> slot + 1: filled by userspace
 * for the cgroups that exist when a policy is applied, and by
 * tapio_lsm_cgroup_mkdir for every cgroup created later (before any task
 * can run in it). LRU: removed cgroups age out. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u32);
} lsm_container_cgroups SEC(".maps");

#define MAX_CGROUP_LEVEL 16

/* Is the current task in (a descendant of) a cgroup of container `slot1`? */
static __always_inline int in_container(__u32 slot1)
{
	for (int l = 1; l <= MAX_CGROUP_LEVEL; l++) {
		__u64 id = bpf_get_current_ancestor_cgroup_id(l);
		if (!id)
			return 0;
		__u32 *v = bpf_map_lookup_elem(&lsm_container_cgroups, &id);
		if (v && *v == slot1)
			return 1;
	}
	return 0;
}

/* Whether the conditions of the rule in `slot` hold for the current task.
 * A global function, so the verifier checks its loops (cgroup levels, comm
 * bytes) once per program instead of once per rule of first_match's chain
 * walk, at each of its call sites: the connect/bind/sendmsg programs took
 * ~0.1 s each to verify, and Tapio with an LSM policy ~0.8 s to start
 * (~10 s in an emulated guest). Scalars only (see net_walk). */
__attribute__((noinline)) int conditions_hold(__u32 slot, __u32 exempt)
{
	struct tapio_lsm_rule *r = bpf_map_lookup_elem(&lsm_rules, &slot);
	if (!r)
		return 0;
	if (exempt && !(r->flags & TAPIO_LSM_R_INCLUDE_TAPIO))
		return 0;
	if (r->uid != ANY_U32 && (__u32)bpf_get_current_uid_gid() != r->uid)
		return 0;
	if (r->cgroup_id && bpf_get_current_ancestor_cgroup_id(r->cgroup_level) != r->cgroup_id)
		return 0;
	if (r->container && !in_container(r->container))
		return 0;
	if (r->comm[0]) {
		char comm[TAPIO_COMM_LEN] = {};
		bpf_get_current_comm(comm, sizeof(comm));
		if (!comm_eq(comm, r->comm))
			return 0;
	}
	return 1;
}

static __always_inline int is_exempt(void)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u64 *cg = bpf_map_lookup_elem(&lsm_exempt, &tgid);
	return cg && *cg == bpf_get_current_cgroup_id();
}

/* `mode` bits of first_match. */
#define M_EXEMPT 1 /* the current task is Tapio */
#define M_PREFIX 2 /* only subtree rules (a parent directory's chain) */

/* Walk the chain starting at `first` (index + 1). Returns the matching
 * rule's index + 1, or 0. A global function: the verifier checks it once,
 * not once per call site and loop iteration of its callers. */
__attribute__((noinline)) __u32 first_match(__u32 gen, __u32 first, __u32 hook, __u32 mode,
					    __u32 access)
{
	__u32 cur = first;
	for (int i = 0; i < MAX_CHAIN; i++) {
		if (!cur || cur > TAPIO_LSM_MAX_RULES)
			return 0;
		__u32 slot = gen * TAPIO_LSM_MAX_RULES + cur - 1;
		struct tapio_lsm_rule *r = bpf_map_lookup_elem(&lsm_rules, &slot);
		if (!r)
			return 0;
		/* A parent's exact-path rule is no subtree rule: skip it, so a
		 * subtree rule chained after it still applies. */
		if (r->hook == hook && (!r->access || (r->access & access)) &&
		    (!(mode & M_PREFIX) || (r->flags & TAPIO_LSM_R_PREFIX)) &&
		    conditions_hold(slot, mode & M_EXEMPT))
			return cur;
		cur = r->next;
	}
	return 0;
}

/* Count, report, and return the verdict of rule `idx1` (index + 1):
 * 1 to allow, 0 to deny (cgroup program convention). */
static __always_inline int decide(__u32 gen, __u32 idx1, __u32 hook, struct subject *s)
{
	__u32 slot = gen * TAPIO_LSM_MAX_RULES + idx1 - 1;
	struct tapio_lsm_rule *r = bpf_map_lookup_elem(&lsm_rules, &slot);
	if (!r)
		return 1;
	__u32 action = r->action;
	__u64 *n = bpf_map_lookup_elem(&lsm_counters, &slot);
	if (n)
		*n += 1;
	struct tapio_lsm_decision *e = tapio_reserve(&tapio_events, &tapio_lost, sizeof(*e));
	if (e) {
		fill_hdr(&e->hdr);
		e->ino = s->ino;
		e->rule = idx1 - 1;
		e->generation = gen;
		e->hook = hook;
		e->action = action;
		e->dev = s->dev;
		e->port = s->port;
		e->family = s->family;
		e->proto = s->proto;
		e->major = s->major;
		e->minor = s->minor;
		e->access = s->access;
		e->target_pid = s->target_pid;
		__builtin_memcpy(e->addr, s->addr, 16);
		/* A denial is what an operator waits for: wake userspace. */
		bpf_ringbuf_submit(e, 0);
	}
	return action == TAPIO_LSM_DENY ? 0 : 1;
}

/* ---------------------------------------------------------------------
 * cgroup hooks
 * ------------------------------------------------------------------- */

/* The first rule (index + 1) that applies to `addr` under (hook, proto,
 * port) `hpp` (the key's first 4 bytes): the chain of the longest prefix
 * holding the address, then of each shorter one, so a more specific rule
 * whose conditions fail never hides a broader one. Global (verified once);
 * the address comes as two scalars because a global function of a 5.8
 * kernel takes no pointer to the stack. */
__attribute__((noinline)) __u32 net_walk(__u32 gen_mode, __u32 hpp, __u64 addr_hi,
					 __u64 addr_lo)
{
	__u32 gen = gen_mode & 1;
	__u32 mode = gen_mode >> 1;
	struct net_key k = {.prefixlen = 32 + 128};
	__builtin_memcpy(&k.hook, &hpp, 4);
	__builtin_memcpy(&k.addr[0], &addr_hi, 8);
	__builtin_memcpy(&k.addr[8], &addr_lo, 8);
	for (int i = 0; i < MAX_PREFIXES; i++) {
		struct net_val *v = gen ? bpf_map_lookup_elem(&lsm_net_1, &k)
					: bpf_map_lookup_elem(&lsm_net_0, &k);
		if (!v)
			return 0;
		__u32 hook = k.hook;
		__u32 hit = first_match(gen, v->first, hook, mode, 0);
		if (hit)
			return hit;
		/* 32: the (hook, proto, port) bits alone, nothing shorter. */
		if (v->prefixlen <= 32 || v->prefixlen > 32 + 128)
			return 0;
		k.prefixlen = v->prefixlen - 1;
	}
	return 0;
}

/* Decide a connect/bind to `k->addr` (filled by the caller, which alone
 * may read its family's context fields). */
static __noinline int net_check(struct net_key *k, __u16 port, __u32 proto, __u32 family,
				__u32 hook)
{
	__u32 gen = generation();
	__u32 f = hook_flags(gen, hook);
	if (!f)
		return 1;
	struct subject s = {.family = family, .proto = proto, .port = bpf_ntohs(port)};
	__builtin_memcpy(s.addr, k->addr, 16);
	__u32 gen_mode = gen | (is_exempt() ? M_EXEMPT << 1 : 0);
	__u64 hi, lo;
	__builtin_memcpy(&hi, &k->addr[0], 8);
	__builtin_memcpy(&lo, &k->addr[8], 8);
	/* Most specific first: exact protocol and port, then "any"; only the
	 * combinations some rule uses. */
	for (int i = 0; i < 4; i++) {
		__u32 need = i < 2 ? TAPIO_LSM_F_EXACT_PROTO : TAPIO_LSM_F_ANY_PROTO;
		__u32 need_port = (i & 1) ? TAPIO_LSM_F_ANY_PORT : TAPIO_LSM_F_EXACT_PORT;
		if (!(f & need) || !(f & need_port))
			continue;
		struct net_key hk = {.hook = hook};
		hk.proto = i < 2 ? (__u8)proto : 0;
		hk.port = (i & 1) ? 0 : port;
		__u32 hpp;
		__builtin_memcpy(&hpp, &hk.hook, 4);
		__u32 hit = net_walk(gen_mode, hpp, hi, lo);
		if (hit)
			return decide(gen, hit, hook, &s);
	}
	return 1;
}

static __always_inline int check4(struct bpf_sock_addr *ctx, __u32 hook)
{
	struct net_key k = {};
	__u32 a = ctx->user_ip4;
	k.addr[10] = 0xff;
	k.addr[11] = 0xff;
	__builtin_memcpy(&k.addr[12], &a, 4);
	return net_check(&k, (__u16)ctx->user_port, ctx->protocol, 2, hook);
}

static __always_inline int check6(struct bpf_sock_addr *ctx, __u32 hook)
{
	struct net_key k = {};
	__u32 a0 = ctx->user_ip6[0], a1 = ctx->user_ip6[1], a2 = ctx->user_ip6[2],
	      a3 = ctx->user_ip6[3];
	__builtin_memcpy(&k.addr[0], &a0, 4);
	__builtin_memcpy(&k.addr[4], &a1, 4);
	__builtin_memcpy(&k.addr[8], &a2, 4);
	__builtin_memcpy(&k.addr[12], &a3, 4);
	return net_check(&k, (__u16)ctx->user_port, ctx->protocol, 10, hook);
}

SEC("cgroup/connect4")
int tapio_lsm_connect4(struct bpf_sock_addr *ctx)
{
	return check4(ctx, TAPIO_LSM_CONNECT);
}

SEC("cgroup/connect6")
int tapio_lsm_connect6(struct bpf_sock_addr *ctx)
{
	return check6(ctx, TAPIO_LSM_CONNECT);
}

/* Unconnected UDP sends reach the same destinations as connect(). */
SEC("cgroup/sendmsg4")
int tapio_lsm_sendmsg4(struct bpf_sock_addr *ctx)
{
	return check4(ctx, TAPIO_LSM_CONNECT);
}

SEC("cgroup/sendmsg6")
int tapio_lsm_sendmsg6(struct bpf_sock_addr *ctx)
{
	return check6(ctx, TAPIO_LSM_CONNECT);
}

SEC("cgroup/bind4")
int tapio_lsm_bind4(struct bpf_sock_addr *ctx)
{
	return check4(ctx, TAPIO_LSM_BIND);
}

SEC("cgroup/bind6")
int tapio_lsm_bind6(struct bpf_sock_addr *ctx)
{
	return check6(ctx, TAPIO_LSM_BIND);
}

SEC("cgroup/sock_create")
int tapio_lsm_sock_create(struct bpf_sock *sk)
{
	__u32 gen = generation();
	if (!hook_flags(gen, TAPIO_LSM_SOCKET_CREATE))
		return 1;
	int exempt = is_exempt();
	struct subject s = {.family = sk->family, .proto = sk->type};
	/* (0, 0): a rule naming neither, i.e. every socket the hook sees. */
	struct sock_key keys[4] = {
		{.family = sk->family, .type = sk->type},
		{.family = sk->family, .type = 0},
		{.family = 0, .type = sk->type},
		{.family = 0, .type = 0},
	};
#pragma unroll
	for (int i = 0; i < 4; i++) {
		__u32 *v = gen ? bpf_map_lookup_elem(&lsm_sock_1, &keys[i])
			       : bpf_map_lookup_elem(&lsm_sock_0, &keys[i]);
		__u32 hit = v ? first_match(gen, *v, TAPIO_LSM_SOCKET_CREATE, exempt, 0) : 0;
		if (hit)
			return decide(gen, hit, TAPIO_LSM_SOCKET_CREATE, &s);
	}
	return 1;
}

SEC("cgroup/dev")
int tapio_lsm_dev(struct bpf_cgroup_dev_ctx *ctx)
{
	__u32 type = ctx->access_type & 0xffff;
	__u32 access = ctx->access_type >> 16;
	__u32 gen = generation();
	if (!hook_flags(gen, TAPIO_LSM_DEVICE))
		return 1;
	int exempt = is_exempt();
	struct subject s = {.major = ctx->major, .minor = ctx->minor, .access = access};
	struct dev_key keys[2] = {
		{.type = type, .major = ctx->major, .minor = ctx->minor},
		{.type = type, .major = ctx->major, .minor = ANY_U32},
	};
#pragma unroll
	for (int i = 0; i < 2; i++) {
		__u32 *v = gen ? bpf_map_lookup_elem(&lsm_dev_1, &keys[i])
			       : bpf_map_lookup_elem(&lsm_dev_0, &keys[i]);
		__u32 hit = v ? first_match(gen, *v, TAPIO_LSM_DEVICE, exempt, access) : 0;
		if (hit)
			return decide(gen, hit, TAPIO_LSM_DEVICE, &s);
	}
	return 1;
}

/* ---------------------------------------------------------------------
 * BPF LSM
 * ------------------------------------------------------------------- */

static __always_inline __u32 inode_lookup(__u32 gen, struct inode_key *k)
{
	__u32 *v = gen ? bpf_map_lookup_elem(&lsm_inode_1, k) : bpf_map_lookup_elem(&lsm_inode_0, k);
	return v ? *v : 0;
}

/* The rule (index + 1) for `dentry` under `hook`: the file itself (by
 * its device, then by "any device" when inode rules without one exist),
 * then each parent for subtree rules. `access` is what the operation is
 * (file_modify: enum tapio_lsm_file_op; else 0). */
static __always_inline __u32 dentry_match(__u32 gen, struct dentry *d, __u32 dev, __u32 hook,
					  __u32 flags, __u32 exempt, __u32 access, __u64 *ino_out)
{
	struct inode_key k = {.hook = hook, .dev = dev};
	k.ino = BPF_CORE_READ(d, d_inode, i_ino);
	*ino_out = k.ino;
	__u32 first = k.ino ? inode_lookup(gen, &k) : 0;
	__u32 hit = first ? first_match(gen, first, hook, exempt, access) : 0;
	if (hit)
		return hit;
	if (k.ino && (flags & TAPIO_LSM_F_ANY_DEV)) {
		struct inode_key any = {.hook = hook, .dev = 0, .ino = k.ino};
		first = inode_lookup(gen, &any);
		hit = first ? first_match(gen, first, hook, exempt, access) : 0;
		if (hit)
			return hit;
	}
#pragma unroll
	for (int i = 0; i < MAX_PARENTS; i++) {
		struct dentry *p = BPF_CORE_READ(d, d_parent);
		if (!p || p == d)
			return 0;
		d = p;
		k.ino = BPF_CORE_READ(d, d_inode, i_ino);
		first = inode_lookup(gen, &k);
		if (!first)
			continue;
		__u32 cur = first_match(gen, first, hook, exempt | M_PREFIX, access);
		if (cur)
			return cur;
	}
	return 0;
}

/* Is `d` one of Tapio's own files for `hook`? Hook 0 entries carry a mask
 * of the hooks (1 << hook) that never cover the file: its config file
 * (every hook, so the operator can always fix the policy) and its binary
 * (exec and file_open, so a dead `keep` Tapio's rules cannot stop the next
 * one starting), unless a rule names the file itself. */
static __always_inline int is_tapio_file(__u32 gen, struct dentry *d, __u32 dev, __u32 hook)
{
	struct inode_key ek = {.hook = 0, .dev = dev, .ino = BPF_CORE_READ(d, d_inode, i_ino)};
	return ek.ino && (inode_lookup(gen, &ek) & (1U << (hook & 31)));
}

/* Decide `hook` (with `access`) for the file at dentry `d`: 0 or -EPERM. */
static __always_inline int dentry_check(struct dentry *d, __u32 hook, __u32 access)
{
	if (!d)
		return 0;
	__u32 gen = generation();
	__u32 f = hook_flags(gen, hook);
	if (!f)
		return 0;
	struct subject s = {.access = access};
	s.dev = BPF_CORE_READ(d, d_sb, s_dev);
	if (is_tapio_file(gen, d, s.dev, hook))
		return 0;
	__u32 hit = dentry_match(gen, d, s.dev, hook, f, is_exempt() ? M_EXEMPT : 0, access, &s.ino);
	if (!hit)
		return 0;
	return decide(gen, hit, hook, &s) ? 0 : -EPERM;
}

static __always_inline int file_check(struct file *file, __u32 hook)
{
	if (!file)
		return 0;
	return dentry_check(BPF_CORE_READ(file, f_path.dentry), hook, 0);
}

#define FMODE_WRITE_ 0x2

SEC("lsm/file_open")
int BPF_PROG(tapio_lsm_file_open, struct file *file)
{
	int ret = file_check(file, TAPIO_LSM_FILE_OPEN);
	if (ret)
		return ret;
	/* file_modify's `write`: opening a protected file for writing. */
	if (file && (BPF_CORE_READ(file, f_mode) & FMODE_WRITE_))
		return dentry_check(BPF_CORE_READ(file, f_path.dentry), TAPIO_LSM_FILE_MODIFY,
				    TAPIO_LSM_OP_WRITE);
	return 0;
}

SEC("lsm/bprm_check_security")
int BPF_PROG(tapio_lsm_exec, struct linux_binprm *bprm)
{
	return file_check(BPF_CORE_READ(bprm, file), TAPIO_LSM_EXEC);
}

/* ptrace of a process whose executable a rule names. */
SEC("lsm/ptrace_access_check")
int BPF_PROG(tapio_lsm_ptrace, struct task_struct *child, unsigned int mode)
{
	__u32 gen = generation();
	if (!hook_flags(gen, TAPIO_LSM_PTRACE))
		return 0;
	struct file *exe = BPF_CORE_READ(child, mm, exe_file);
	if (!exe)
		return 0;
	__u32 exempt = is_exempt() ? M_EXEMPT : 0;
	struct subject s = {.target_pid = BPF_CORE_READ(child, tgid)};
	s.dev = BPF_CORE_READ(exe, f_inode, i_sb, s_dev);
	struct dentry *d = BPF_CORE_READ(exe, f_path.dentry);
	if (!d)
		return 0;
	__u32 hit = dentry_match(gen, d, s.dev, TAPIO_LSM_PTRACE, hook_flags(gen, TAPIO_LSM_PTRACE),
				 exempt, 0, &s.ino);
	if (!hit)
		return 0;
	return decide(gen, hit, TAPIO_LSM_PTRACE, &s) ? 0 : -EPERM;
}

static __always_inline int hook_rule(__u32 hook, __u32 access)
{
	__u32 gen = generation();
	__u32 *v = gen ? bpf_map_lookup_elem(&lsm_any_1, &hook) : bpf_map_lookup_elem(&lsm_any_0, &hook);
	if (!v || !*v)
		return 0;
	__u32 hit = first_match(gen, *v, hook, is_exempt() ? M_EXEMPT : 0, 0);
	if (!hit)
		return 0;
	struct subject s = {.access = access};
	return decide(gen, hit, hook, &s) ? 0 : -EPERM;
}

/* finit_module reads the module file through kernel_read_file. */
SEC("lsm/kernel_read_file")
int BPF_PROG(tapio_lsm_read_file, struct file *file, enum kernel_read_file_id id, bool contents)
{
	if (id != READING_MODULE)
		return 0;
	return hook_rule(TAPIO_LSM_MODULE_LOAD, 0);
}

/* init_module hands the image over as a buffer. */
SEC("lsm/kernel_load_data")
int BPF_PROG(tapio_lsm_load_data, enum kernel_load_data_id id, bool contents)
{
	if (id != LOADING_MODULE)
		return 0;
	return hook_rule(TAPIO_LSM_MODULE_LOAD, 0);
}

/* request_module(): the kernel auto-loading a module it wants (a socket
 * family, a filesystem type...). Denied, modprobe is never run and the
 * caller sees the feature as missing. */
SEC("lsm/kernel_module_request")
int BPF_PROG(tapio_lsm_module_request, char *kmod_name)
{
	return hook_rule(TAPIO_LSM_MODULE_LOAD, 1);
}

SEC("lsm/bpf")
int BPF_PROG(tapio_lsm_bpf, int cmd)
{
	if (cmd != BPF_PROG_LOAD_CMD)
		return 0;
	return hook_rule(TAPIO_LSM_BPF, 0);
}

/* ---------------------------------------------------------------------
 * file_modify: protected files and directories (CONFIG_SECURITY_PATH)
 * ------------------------------------------------------------------- */

SEC("lsm/path_unlink")
int BPF_PROG(tapio_lsm_path_unlink, const struct path *dir, struct dentry *dentry)
{
	return dentry_check(dentry, TAPIO_LSM_FILE_MODIFY, TAPIO_LSM_OP_UNLINK);
}

SEC("lsm/path_rmdir")
int BPF_PROG(tapio_lsm_path_rmdir, const struct path *dir, struct dentry *dentry)
{
	return dentry_check(dentry, TAPIO_LSM_FILE_MODIFY, TAPIO_LSM_OP_UNLINK);
}

/* The source (a protected file moved away) or the target (a protected
 * file replaced, or a new name put into a protected directory). */
SEC("lsm/path_rename")
int BPF_PROG(tapio_lsm_path_rename, const struct path *old_dir, struct dentry *old_dentry,
	     const struct path *new_dir, struct dentry *new_dentry)
{
	int ret = dentry_check(old_dentry, TAPIO_LSM_FILE_MODIFY, TAPIO_LSM_OP_RENAME);
	if (ret)
		return ret;
	return dentry_check(new_dentry, TAPIO_LSM_FILE_MODIFY, TAPIO_LSM_OP_RENAME);
}

/* truncate(2); before 6.2 also ftruncate(2) and open(O_TRUNC). */
SEC("lsm/path_truncate")
int BPF_PROG(tapio_lsm_path_truncate, const struct path *path)
{
	return dentry_check(BPF_CORE_READ(path, dentry), TAPIO_LSM_FILE_MODIFY,
			    TAPIO_LSM_OP_TRUNCATE);
}

/* ftruncate(2) and open(O_TRUNC) since 6.2 (the hook is absent before:
 * this program is optional). */
SEC("lsm/file_truncate")
int BPF_PROG(tapio_lsm_file_truncate, struct file *file)
{
	return dentry_check(BPF_CORE_READ(file, f_path.dentry), TAPIO_LSM_FILE_MODIFY,
			    TAPIO_LSM_OP_TRUNCATE);
}

SEC("lsm/path_chmod")
int BPF_PROG(tapio_lsm_path_chmod, const struct path *path, umode_t mode)
{
	return dentry_check(BPF_CORE_READ(path, dentry), TAPIO_LSM_FILE_MODIFY,
			    TAPIO_LSM_OP_CHMOD);
}

SEC("lsm/path_chown")
int BPF_PROG(tapio_lsm_path_chown, const struct path *path)
{
	return dentry_check(BPF_CORE_READ(path, dentry), TAPIO_LSM_FILE_MODIFY,
			    TAPIO_LSM_OP_CHOWN);
}

/* ---------------------------------------------------------------------
 * Containers created after the policy: a cgroup whose leaf name carries a
 * container id a rule names (…-<64 hex>[.scope], …:<id>, /<id>) joins that
 * container's set as it is made, before a task can be moved into it. The
 * parse is exporter/src/enrich/cgroup.rs's container_id().
 * ------------------------------------------------------------------- */

#define CG_PATH_LEN 256

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, char[CG_PATH_LEN]);
} lsm_cg_path SEC(".maps");

static __always_inline int hex_lower(char c)
{
	if (c >= '0' && c <= '9')
		return c;
	if (c >= 'a' && c <= 'f')
		return c;
	if (c >= 'A' && c <= 'F')
		return c + ('a' - 'A');
	return -1;
}

SEC("tracepoint/cgroup/cgroup_mkdir")
int tapio_lsm_cgroup_mkdir(struct trace_event_raw_cgroup *ctx)
{
	__u32 zero = 0;
	char *buf = bpf_map_lookup_elem(&lsm_cg_path, &zero);
	if (!buf)
		return 0;
	__u32 loc = BPF_CORE_READ(ctx, __data_loc_path);
	long n = bpf_probe_read_kernel_str(buf, CG_PATH_LEN, (char *)ctx + (loc & 0xFFFF));
	if (n < 65)
		return 0;
	__u32 end = (__u32)n - 1; /* without the NUL */
	if (end >= 6 && buf[(end - 6) & (CG_PATH_LEN - 1)] == '.' &&
	    buf[(end - 5) & (CG_PATH_LEN - 1)] == 's' && buf[(end - 1) & (CG_PATH_LEN - 1)] == 'e')
		end -= 6;
	if (end < 64 || end > CG_PATH_LEN)
		return 0;
	__u32 start = end - 64;
	if (start > 0) {
		char sep = buf[(start - 1) & (CG_PATH_LEN - 1)];
		if (sep != '-' && sep != ':' && sep != '/')
			return 0;
		/* conmon-<id>: the runtime's monitor, not the container. */
		if (start >= 7) {
			const char conmon[6] = {'c', 'o', 'n', 'm', 'o', 'n'};
			int same = 1;
			for (int i = 0; i < 6; i++)
				same &= buf[(start - 7 + i) & (CG_PATH_LEN - 1)] == conmon[i];
			if (same)
				return 0;
		}
	}
	__u64 h = 0xcbf29ce484222325ULL;
	for (int i = 0; i < 64; i++) {
		int c = hex_lower(buf[(start + i) & (CG_PATH_LEN - 1)]);
		if (c < 0)
			return 0;
		h ^= (__u8)c;
		h *= 0x100000001b3ULL;
	}
	__u32 *slot = bpf_map_lookup_elem(&lsm_container_ids, &h);
	if (!slot)
		return 0;
	__u64 id = BPF_CORE_READ(ctx, id);
	__u32 v = *slot;
	if (bpf_map_update_elem(&lsm_container_cgroups, &id, &v, BPF_ANY))
		tapio_count_lost(&tapio_lost, TAPIO_LOST_MAP_FULL);
	return 0;
}

/* ---------------------------------------------------------------------
 * Who is Tapio? Attached only for the moment userspace asks.
 * ------------------------------------------------------------------- */

/* prctl option no kernel knows (EINVAL): "TAPI". */
#define TAPIO_WHOAMI 0x54415049

SEC("tracepoint/syscalls/sys_enter_prctl")
int tapio_lsm_whoami(struct trace_event_raw_sys_enter *ctx)
{
	__u32 zero = 0;
	struct whoami *w = bpf_map_lookup_elem(&lsm_whoami, &zero);
	if (!w || !w->nonce)
		return 0;
	if (BPF_CORE_READ(ctx, args[0]) != TAPIO_WHOAMI ||
	    (__u64)BPF_CORE_READ(ctx, args[1]) != w->nonce)
		return 0;
	w->cgroup_id = bpf_get_current_cgroup_id();
	w->tgid = bpf_get_current_pid_tgid() >> 32;
	return 0;
}
