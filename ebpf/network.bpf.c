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

/* Kernel-only map values: never read by userspace, so not in the ABI. */
struct pending_connect {
	struct tapio_event_header hdr;
	__u64 start_ns;
};

struct live_conn {
	struct tapio_event_header hdr;
	__u64 established_ns;
	__u32 inbound;
	__u32 _pad;
};

/* Keyed by socket address. LRU: a socket whose close we never see (state
 * changes outside TCP, missed events) is evicted instead of leaking. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct pending_connect);
} tapio_tcp_pending SEC(".maps");

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

static __always_inline void read_tuple(struct tapio_tcp_tuple *t, const struct sock *sk,
				       const int btf)
{
	__u16 family = TAPIO_RD(btf, sk, __sk_common.skc_family);
	t->family = family;
	/* inet_sport, not skc_num: the TCP_CLOSE transition is traced after
	 * inet_put_port() has zeroed skc_num, while inet_sport survives. */
	t->sport = bpf_ntohs(BPF_CORE_READ((const struct inet_sock *)sk, inet_sport));
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
	struct pending_connect p = {};
	tapio_fill_header_current(&p.hdr, TAPIO_EVENT_TCP_CONNECT);
	p.start_ns = p.hdr.ts_ns;
	track(&tapio_tcp_pending, &key, &p);
}

static __always_inline void on_connect_done(const struct sock *sk, __u64 key, int newstate,
					    const int btf)
{
	struct pending_connect *p = bpf_map_lookup_elem(&tapio_tcp_pending, &key);
	if (!p)
		return;
	__u64 now = bpf_ktime_get_boot_ns();
	__u64 dur = now - p->start_ns;
	int err = 0;
	__u32 outcome = TAPIO_TCP_OK;
	if (newstate != TCP_ESTABLISHED) {
		err = TAPIO_RD(btf, sk, sk_err);
		outcome = outcome_of(err);
	}
	hist_add(outcome, wire_is_v6(sk, btf), dur);

	if (newstate == TCP_ESTABLISHED) {
		struct live_conn c = {};
		c.hdr = p->hdr;
		c.established_ns = now;
		track(&tapio_tcp_conns, &key, &c);
	}

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
	bpf_map_delete_elem(&tapio_tcp_pending, &key);
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
			const struct tcp_sock *tp = (const struct tcp_sock *)sk;
			/* Payload only: bytes_acked counts our SYN (active open) and
			 * our FIN once acked; bytes_received counts the peer's FIN. */
			__u8 shut = TAPIO_RD(btf, sk, sk_shutdown);
			__u64 acked = BPF_CORE_READ(tp, bytes_acked);
			__u64 rcvd = BPF_CORE_READ(tp, bytes_received);
			__u64 ctl = c->inbound ? 0 : 1;
			if ((shut & SEND_SHUTDOWN) &&
			    BPF_CORE_READ(tp, snd_una) == BPF_CORE_READ(tp, write_seq))
				ctl += 1;
			e->bytes_sent = acked > ctl ? acked - ctl : 0;
			if ((shut & RCV_SHUTDOWN) && rcvd > 0)
				rcvd -= 1;
			e->bytes_received = rcvd;
			e->srtt_us = BPF_CORE_READ(tp, srtt_us) >> 3;
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
 * runs in 20 s, each a missing inbound close log. So a twin, attached
 * beside it, does those runs: it works only while the first one is between
 * its two stores of `running` on its CPU, which for a new run there means
 * the kernel skipped the first one for it. Between entering the first
 * program and its first store (and after its last) the kernel still
 * skips it and the twin does not know: those few runs are lost, and
 * counted, since every run the twin does is one the first one missed:
 * tapio.events.lost{reason="recursion"} = misses - twin runs, which
 * userspace reads (prog_info). The twin's own misses lose nothing: it is
 * busy only when the first one is not (returning early, or doing a nested
 * run, and softirqs do not nest).
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TAPIO_TWIN_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} tapio_twin SEC(".maps");

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(tapio_tcp_state_btf, const struct sock *sk, const int oldstate, const int newstate)
{
	__u32 slot = TAPIO_TWIN_RUNNING;
	__u64 *running = bpf_map_lookup_elem(&tapio_twin, &slot);
	if (running)
		*running = 1;
	handle(sk, oldstate, newstate, 1);
	if (running)
		*running = 0;
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(tapio_tcp_state_btf_nested, const struct sock *sk, const int oldstate,
	     const int newstate)
{
	__u32 slot = TAPIO_TWIN_RUNNING;
	__u64 *running = bpf_map_lookup_elem(&tapio_twin, &slot);
	if (!running || !*running)
		return 0;
	slot = TAPIO_TWIN_COVERED;
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
