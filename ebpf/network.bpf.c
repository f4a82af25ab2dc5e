// SPDX-License-Identifier: GPL-2.0-only
/*
 * TCP connections from the socket state machine (sock/inet_sock_set_state):
 *   SYN_SENT            -> remember who connected, when
 *   SYN_SENT -> ESTABLISHED | CLOSE   -> tcp.connect record + histogram
 *   SYN_RECV -> ESTABLISHED           -> an accepted (inbound) connection
 *   ... -> CLOSE of a known connection -> network.connection.close record
 *
 * The connect-latency histogram counts every attempt in the kernel
 * (per-CPU, read by userspace at metric export); per-attempt records are
 * sampled, except failures and slow ones, which are always sent.
 *
 * Two attach paths with one body: tp_btf (typed) and the classic tracepoint.
 *
 * probes.scope is decided once per connection, when it enters the maps:
 * an outbound one at SYN_SENT (connect(), the connecting task is current),
 * an inbound one at SYN_RECV -> ESTABLISHED (softirq: by the cgroup its
 * listening socket was created in). Later transitions and the close only
 * look connections up, so an out-of-scope one is never tracked, recorded
 * or counted in the histogram.
 */
#include "tapio_bpf.h"
#include "tapio_scope.h"

TAPIO_PROBE_MAPS();

typedef struct tapio_tcp_connect tapio_tcp_connect;
typedef struct tapio_tcp_close tapio_tcp_close;
typedef struct tapio_hist tapio_hist;
TAPIO_ABI_BTF(tapio_tcp_connect);
TAPIO_ABI_BTF(tapio_tcp_close);
TAPIO_ABI_BTF(tapio_hist);

/* Set by userspace before load. A record is sampled in when
 * bpf_get_prandom_u32() <= threshold (0xffffffff: every one). */
const volatile __u32 tapio_sample_threshold = 0xffffffff;
/* Attempts at least this slow are always recorded (0: off). */
const volatile __u64 tapio_slow_ns = 0;

#define AF_INET 2
#define AF_INET6 10
#define ECONNREFUSED 111
#define ETIMEDOUT 110
#define EHOSTUNREACH 113
#define ENETUNREACH 101
#define RCV_SHUTDOWN 1
#define SEND_SHUTDOWN 2

/* Kernel-only map value: never read by userspace, so not in the ABI. One
 * entry per connection from SYN_SENT (or, inbound, ESTABLISHED) to its
 * close: a connect in progress is an entry with established_ns 0, made
 * established in place, so an outbound connection costs one LRU insert
 * and one delete (a map of connects in progress besides cost it a second
 * insert and delete, ~0.3 us a connection). */
struct live_conn {
	struct tapio_event_header hdr;
	__u64 start_ns;       /* connect(): SYN_SENT; inbound: as established */
	__u64 established_ns; /* 0 while connecting */
	__u32 inbound;
	__u32 _pad;
};

/* Keyed by socket address. LRU: a socket whose close we never see (state
 * changes outside TCP, missed events) is evicted instead of leaking. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 262144);
	__type(key, __u64);
	__type(value, struct live_conn);
} tapio_tcp_conns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TAPIO_TCP_HIST_SERIES);
	__type(key, __u32);
	__type(value, struct tapio_hist);
} tapio_tcp_hist SEC(".maps");

static __always_inline int sampled_in(void)
{
	return tapio_sample_threshold == 0xffffffff ||
	       bpf_get_prandom_u32() <= tapio_sample_threshold;
}

/* The tcp_sock fields a close record needs. */
struct tcp_counts {
	__u64 acked, rcvd;
	__u32 snd_una, write_seq, srtt_us;
};

/*
 * The tp_btf path reads them with plain loads through the tcp_sock that
 * bpf_skc_to_tcp_sock() types (a cast of the traced `struct sock *` would
 * not be allowed past struct sock's end); each BPF_CORE_READ is a probe
 * read call, five of them per close.
 */
static __always_inline void read_tcp_counts(struct tcp_counts *n, const struct sock *sk,
					    const int btf)
{
	if (btf) {
		struct tcp_sock *tp = bpf_skc_to_tcp_sock((void *)sk);
		if (!tp) {
			__builtin_memset(n, 0, sizeof(*n));
			return;
		}
		n->acked = tp->bytes_acked;
		n->rcvd = tp->bytes_received;
		n->snd_una = tp->snd_una;
		n->write_seq = tp->write_seq;
		n->srtt_us = tp->srtt_us;
		return;
	}
	const struct tcp_sock *tp = (const struct tcp_sock *)sk;
	n->acked = BPF_CORE_READ(tp, bytes_acked);
	n->rcvd = BPF_CORE_READ(tp, bytes_received);
	n->snd_una = BPF_CORE_READ(tp, snd_una);
	n->write_seq = BPF_CORE_READ(tp, write_seq);
	n->srtt_us = BPF_CORE_READ(tp, srtt_us);
}

/* inet_sport, not skc_num: the TCP_CLOSE transition is traced after
 * inet_put_port() has zeroed skc_num, while inet_sport survives. */
static __always_inline __u16 inet_sport(const struct sock *sk, const int btf)
{
	if (btf) {
		struct tcp_sock *tp = bpf_skc_to_tcp_sock((void *)sk);
		return tp ? tp->inet_conn.icsk_inet.inet_sport : 0;
	}
	return BPF_CORE_READ((const struct inet_sock *)sk, inet_sport);
}

static __always_inline void read_tuple(struct tapio_tcp_tuple *t, const struct sock *sk,
				       const int btf)
{
	__u16 family = TAPIO_RD(btf, sk, __sk_common.skc_family);
	t->family = family;
	t->sport = bpf_ntohs(inet_sport(sk, btf));
	t->dport = bpf_ntohs(TAPIO_RD(btf, sk, __sk_common.skc_dport));
	if (family == AF_INET6 && btf) {
		__builtin_memcpy(t->saddr, sk->__sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8, 16);
		__builtin_memcpy(t->daddr, sk->__sk_common.skc_v6_daddr.in6_u.u6_addr8, 16);
	} else if (family == AF_INET6) {
		BPF_CORE_READ_INTO(&t->saddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&t->daddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	} else {
		/* v4-mapped: ::ffff:a.b.c.d */
		__builtin_memset(t->saddr, 0, 16);
		__builtin_memset(t->daddr, 0, 16);
		t->saddr[10] = t->saddr[11] = 0xff;
		t->daddr[10] = t->daddr[11] = 0xff;
		__u32 saddr = TAPIO_RD(btf, sk, __sk_common.skc_rcv_saddr);
		__u32 daddr = TAPIO_RD(btf, sk, __sk_common.skc_daddr);
		__builtin_memcpy(&t->saddr[12], &saddr, 4);
		__builtin_memcpy(&t->daddr[12], &daddr, 4);
	}
}

/* IPv6 on the wire: an AF_INET6 socket whose peer is not v4-mapped. */
static __always_inline int wire_is_v6(const struct sock *sk, const int btf)
{
	if (TAPIO_RD(btf, sk, __sk_common.skc_family) != AF_INET6)
		return 0;
	__u32 a[4] = {};
	if (btf)
		__builtin_memcpy(a, sk->__sk_common.skc_v6_daddr.in6_u.u6_addr32, 16);
	else
		BPF_CORE_READ_INTO(&a, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr32);
	return !(a[0] == 0 && a[1] == 0 && a[2] == bpf_htonl(0xffff));
}

/* Series index: outcome x (ipv4, ipv6) as seen on the wire. */
static __always_inline void hist_add(__u32 outcome, int v6, __u64 ns)
{
	__u32 series = outcome * 2 + (v6 ? 1 : 0);
	if (series >= TAPIO_TCP_HIST_SERIES)
		return;
	struct tapio_hist *h = bpf_map_lookup_elem(&tapio_tcp_hist, &series);
	if (!h)
		return;
	__u32 b = log2_bucket(ns);
	if (b < TAPIO_HIST_BUCKETS)
		h->buckets[b] += 1;
	h->sum_ns += ns;
}

static __always_inline __u32 outcome_of(int err)
{
	switch (err) {
	case 0:
		return TAPIO_TCP_CANCELLED;
	case ECONNREFUSED:
		return TAPIO_TCP_REFUSED;
	case ETIMEDOUT:
		return TAPIO_TCP_TIMEOUT;
	case EHOSTUNREACH:
	case ENETUNREACH:
		return TAPIO_TCP_UNREACHABLE;
	default:
		return TAPIO_TCP_ERROR;
	}
}

#define EEXIST 17

/*
 * Start tracking the socket at `key`. An entry still there means the
 * kernel freed and reused that socket without a transition we saw (a
 * close or connect result traced by no program): the record its end
 * would have made is lost, so it is counted before the entry is replaced.
 * The second update only runs in that rare case.
 */
static __always_inline void track(void *map, __u64 *key, const void *val)
{
	/* int: before 6.4 the verifier calls the map's update directly and
	 * that returned an int, so r0's upper half is not the sign of the
	 * error; a 64-bit compare with -EEXIST never matched on 6.1. */
	int err = bpf_map_update_elem(map, key, val, BPF_NOEXIST);
	if (err == -EEXIST) {
		if (sampled_in())
			tapio_count_lost(&tapio_lost, TAPIO_LOST_END_UNSEEN);
		err = bpf_map_update_elem(map, key, val, BPF_ANY);
	}
	if (err)
		tapio_count_lost(&tapio_lost, TAPIO_LOST_MAP_FULL);
}

static __always_inline void on_syn_sent(__u64 key)
{
	if (!tapio_current_in_scope())
		return;
	struct live_conn c = {};
	tapio_fill_header_current(&c.hdr, TAPIO_EVENT_TCP_CONNECT);
	c.start_ns = c.hdr.ts_ns;
	track(&tapio_tcp_conns, &key, &c);
}

static __always_inline void on_connect_done(const struct sock *sk, __u64 key, int newstate,
					    const int btf)
{
	struct live_conn *p = bpf_map_lookup_elem(&tapio_tcp_conns, &key);
	if (!p)
		return;
	if (p->established_ns) {
		/* Not this connect's (its SYN_SENT went unseen): the end of the
		 * address's last connection, which no program saw. */
		if (sampled_in())
			tapio_count_lost(&tapio_lost, TAPIO_LOST_END_UNSEEN);
		bpf_map_delete_elem(&tapio_tcp_conns, &key);
		return;
	}
	__u64 now = bpf_ktime_get_boot_ns();
	__u64 dur = now - p->start_ns;
	int err = 0;
	__u32 outcome = TAPIO_TCP_OK;
	if (newstate != TCP_ESTABLISHED) {
		err = TAPIO_RD(btf, sk, sk_err);
		outcome = outcome_of(err);
	}
	hist_add(outcome, wire_is_v6(sk, btf), dur);

	int keep = outcome != TAPIO_TCP_OK || (tapio_slow_ns && dur >= tapio_slow_ns) || sampled_in();
	if (keep) {
		struct tapio_tcp_connect *e = tapio_reserve(&tapio_events, &tapio_lost, sizeof(*e));
		if (e) {
			e->hdr = p->hdr;
			e->start_ns = p->start_ns;
			e->end_ns = now;
			e->sock_cookie = TAPIO_RD(btf, sk, __sk_common.skc_cookie.counter);
			e->outcome = outcome;
			e->error = err;
			read_tuple(&e->tuple, sk, btf);
			e->tuple._pad0 = 0;
			tapio_submit(&tapio_events, e);
		}
	}
	if (newstate == TCP_ESTABLISHED)
		p->established_ns = now;
	else
		bpf_map_delete_elem(&tapio_tcp_conns, &key);
}

static __always_inline void on_accepted(const struct sock *sk, __u64 key)
{
	/* This runs in softirq: the accepting process is not known yet, so
	 * the header only carries the time. */
	if (!tapio_sock_in_scope(sk))
		return;
	struct live_conn c = {};
	c.hdr.ts_ns = bpf_ktime_get_boot_ns();
	c.hdr.kind = TAPIO_EVENT_TCP_CLOSE;
	c.start_ns = c.hdr.ts_ns;
	c.established_ns = c.hdr.ts_ns;
	c.inbound = 1;
	track(&tapio_tcp_conns, &key, &c);
}

static __always_inline void on_close(const struct sock *sk, __u64 key, int oldstate, const int btf)
{
	struct live_conn *c = bpf_map_lookup_elem(&tapio_tcp_conns, &key);
	if (!c)
		return;
	/* A socket that never was established (a listener, a child reset in
	 * SYN_RECV) found an entry: its address's last connection ended
	 * unseen; this socket's close is not that connection's. */
	if (oldstate == TCP_LISTEN || oldstate == TCP_SYN_RECV) {
		if (sampled_in())
			tapio_count_lost(&tapio_lost, TAPIO_LOST_END_UNSEEN);
		bpf_map_delete_elem(&tapio_tcp_conns, &key);
		return;
	}
	/* Still connecting as far as we saw: its connect result was traced
	 * by neither program (counted as recursion), so it has no close
	 * record either, as when connects in progress had a map of their own. */
	if (!c->established_ns) {
		bpf_map_delete_elem(&tapio_tcp_conns, &key);
		return;
	}
	if (sampled_in()) {
		struct tapio_tcp_close *e = tapio_reserve(&tapio_events, &tapio_lost, sizeof(*e));
		if (e) {
			e->hdr = c->hdr;
			e->hdr.kind = TAPIO_EVENT_TCP_CLOSE;
			if (c->inbound) {
				/* Best effort: the task closing it, when in process context. */
				tapio_fill_header_current(&e->hdr, TAPIO_EVENT_TCP_CLOSE);
			}
			e->hdr.ts_ns = bpf_ktime_get_boot_ns();
			e->established_ns = c->established_ns;
			struct tcp_counts n;
			read_tcp_counts(&n, sk, btf);
			/* Payload only: bytes_acked counts our SYN (active open) and
			 * our FIN once acked; bytes_received counts the peer's FIN. */
			__u8 shut = TAPIO_RD(btf, sk, sk_shutdown);
			__u64 ctl = c->inbound ? 0 : 1;
			if ((shut & SEND_SHUTDOWN) && n.snd_una == n.write_seq)
				ctl += 1;
			e->bytes_sent = n.acked > ctl ? n.acked - ctl : 0;
			if ((shut & RCV_SHUTDOWN) && n.rcvd > 0)
				n.rcvd -= 1;
			e->bytes_received = n.rcvd;
			e->srtt_us = n.srtt_us >> 3;
			e->sock_cookie = TAPIO_RD(btf, sk, __sk_common.skc_cookie.counter);
			e->inbound = c->inbound;
			read_tuple(&e->tuple, sk, btf);
			e->tuple._pad0 = 0;
			tapio_submit(&tapio_events, e);
		}
	}
	bpf_map_delete_elem(&tapio_tcp_conns, &key);
}

static __always_inline int handle(const struct sock *sk, int oldstate, int newstate, const int btf)
{
	if (TAPIO_RD(btf, sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	__u16 family = TAPIO_RD(btf, sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return 0;
	__u64 key = (__u64)sk;
	if (newstate == TCP_SYN_SENT)
		on_syn_sent(key);
	else if (oldstate == TCP_SYN_SENT)
		on_connect_done(sk, key, newstate, btf);
	else if (oldstate == TCP_SYN_RECV && newstate == TCP_ESTABLISHED)
		on_accepted(sk, key);
	else if (newstate == TCP_CLOSE)
		on_close(sk, key, oldstate, btf);
	return 0;
}

/*
 * The kernel runs a tp_btf program at most once per CPU at a time: a state
 * change traced while tapio_tcp_state_btf runs on that CPU (a softirq on
 * the tail of an interrupt that hit it in process context, typically a
 * loopback listener's child socket becoming established while a connect
 * or close is traced) is skipped and only counted in the program's
 * recursion_misses. Measured at ~40k loopback connections/s: 16-30 skipped
 * runs in 20 s, each a missing record. So a twin, attached after it, does
 * those runs, and only those:
 *
 * the first program pushes its event (socket, old and new state) on a
 * per-CPU stack as it starts, and the twin, which the tracepoint runs
 * after it for the same event, looks for that event on the stack. Found:
 * the first program ran for it; the twin pops it (and whatever lies above
 * it: events of interrupts nested between the two whose twin run was
 * skipped) and is done. Not found: the kernel skipped the first program
 * for it, wherever in that run the interrupt came (a flag the first
 * program sets left blind windows before its first store and after its
 * last, whose skipped runs were counted lost and, when they were closes,
 * counted again as end_unseen when the socket was reused); the twin
 * handles the event and counts it covered. So every covered run is a
 * missed one done, and tapio.events.lost{reason="recursion"} = misses -
 * covered (userspace reads both, prog_info and `tapio_twin`) is exactly
 * the runs neither did: both busy on that CPU, which needs a state change
 * in a hard interrupt nested in a softirq nested in the first program.
 *
 * An entry is left behind only when the twin is skipped right after its
 * pop (an interrupt in its last instructions): harmless, as it names an
 * event already handled, and swept out once the stack is full by age (no
 * live entry waits a second between the two programs). The order of the
 * two on the tracepoint is the order they were attached in: first, then
 * twin (probes/network/mod.rs lists them so).
 */
#define TWIN_DEPTH 16
#define TWIN_STALE_JIFFIES 1000 /* at least a second at any HZ up to 1000 */

struct twin_entry {
	__u64 sk;
	__u64 states; /* old << 32 | new */
	__u64 jiffies;
};

struct twin_stack {
	__u64 depth;
	struct twin_entry e[TWIN_DEPTH];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct twin_stack);
} tapio_twin_stack SEC(".maps");

/* Runs the twin did (TAPIO_TWIN_COVERED), read by userspace. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TAPIO_TWIN_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} tapio_twin SEC(".maps");

/* Keep the entries younger than TWIN_STALE_JIFFIES, in order. */
static __always_inline __u64 twin_sweep(struct twin_stack *s, __u64 now)
{
	__u64 kept = 0;
	for (int i = 0; i < TWIN_DEPTH; i++) {
		if (now - s->e[i].jiffies > TWIN_STALE_JIFFIES)
			continue;
		if (kept != (__u64)i)
			s->e[kept & (TWIN_DEPTH - 1)] = s->e[i];
		kept++;
	}
	return kept;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(tapio_tcp_state_btf, const struct sock *sk, const int oldstate, const int newstate)
{
	__u32 zero = 0;
	struct twin_stack *s = bpf_map_lookup_elem(&tapio_twin_stack, &zero);
	if (s) {
		__u64 now = bpf_jiffies64();
		__u64 d = s->depth;
		if (d >= TWIN_DEPTH)
			d = twin_sweep(s, now);
		if (d < TWIN_DEPTH) {
			struct twin_entry *e = &s->e[d];
			e->sk = (__u64)sk;
			e->states = (__u64)(__u32)oldstate << 32 | (__u32)newstate;
			e->jiffies = now;
			/* The depth last: a twin nested before it does not see a
			 * half-written entry. */
			s->depth = d + 1;
		}
	}
	handle(sk, oldstate, newstate, 1);
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(tapio_tcp_state_btf_nested, const struct sock *sk, const int oldstate,
	     const int newstate)
{
	__u32 zero = 0;
	struct twin_stack *s = bpf_map_lookup_elem(&tapio_twin_stack, &zero);
	if (!s)
		return 0;
	__u64 d = s->depth;
	__u64 states = (__u64)(__u32)oldstate << 32 | (__u32)newstate;
	for (int i = TWIN_DEPTH - 1; i >= 0; i--) {
		if ((__u64)i >= d)
			continue;
		if (s->e[i].sk == (__u64)sk && s->e[i].states == states) {
			s->depth = i;
			return 0;
		}
	}
	__u32 slot = TAPIO_TWIN_COVERED;
	__u64 *covered = bpf_map_lookup_elem(&tapio_twin, &slot);
	if (covered)
		*covered += 1;
	return handle(sk, oldstate, newstate, 1);
}

SEC("tracepoint/sock/inet_sock_set_state")
int tapio_tcp_state_tp(struct trace_event_raw_inet_sock_set_state *ctx)
{
	if (BPF_CORE_READ(ctx, protocol) != IPPROTO_TCP)
		return 0;
	return handle((const struct sock *)BPF_CORE_READ(ctx, skaddr), BPF_CORE_READ(ctx, oldstate),
		      BPF_CORE_READ(ctx, newstate), 0);
}
