// SPDX-License-Identifier: GPL-2.0-only
/*
 * XDP packet filter for the interfaces named in config.
 *
 * tapio_xdp_filter (XDP, ingress) decides, in this order:
 *   1. allow list (source LPM)                  -> PASS  allowlist
 *   2. block list (source LPM)                  -> DROP  blocklist
 *   3. UDP from port 53 (DNS amplification)     -> DROP  dns_unsolicited / dns_oversize
 *   4. reply on a flow this host sent on        -> PASS  established (skips 5 to 7;
 *      looked up only when 6 or 7 is on)
 *   5. active auto-block of the source          -> DROP  auto_block
 *   6. TCP SYN: per-destination and per-source SYN rates; a source over its
 *      rate is auto-blocked for block_ns, unless it completed a TCP
 *      handshake with this host (xdp_peers): SYNs are trivially spoofed,
 *      and a flood in a peer's name must not cut the peer's live flows.
 *      A peer's SYNs over the rate are still dropped -> DROP  syn_flood
 *   7. per-source packet rate                   -> DROP  rate_limit
 *   otherwise                                   -> PASS  pass / fragment / unparsed_l4
 * Packets that are not IP pass unexamined (not_ip); IP packets whose
 * headers cannot be read pass to the stack, which drops them (malformed).
 *
 * tapio_xdp_learn (TC egress on the same interfaces) records the flows this
 * host sends on (conntrack for step 4), the peers it has an established
 * TCP connection with (step 6) and its DNS queries (step 3).
 *
 * Policy is double-buffered: every policy map exists twice and
 * xdp_active[0] says which generation the filter reads. Userspace writes
 * the idle generation whole, then flips the index: one map write, so a
 * packet sees the old policy or the new one, never a mix.
 *
 * Rates use GCRA (one u64 "theoretical arrival time" per key): a packet
 * passes if tat - now <= tolerance ((burst - 1) intervals), then
 * tat += interval: `burst` packets at once, then one per interval. The
 * update is not atomic across CPUs; two CPUs racing on one source may each admit a
 * packet (over-admission of at most one packet per CPU per race).
 */
#include "tapio_bpf.h"

TAPIO_PROBE_MAPS();

typedef struct tapio_xdp_block tapio_xdp_block;
typedef struct tapio_xdp_policy tapio_xdp_policy;
typedef struct tapio_xdp_counter tapio_xdp_counter;
typedef struct tapio_xdp_block_state tapio_xdp_block_state;
TAPIO_ABI_BTF(tapio_xdp_block);
TAPIO_ABI_BTF(tapio_xdp_policy);
TAPIO_ABI_BTF(tapio_xdp_counter);
TAPIO_ABI_BTF(tapio_xdp_block_state);

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8
#define PROTO_TCP 6
#define PROTO_UDP 17
/* "Next": tcx (TCX_NEXT) and clsact (TC_ACT_UNSPEC) both run the
 * interface's other programs (the tc probe's, say) after this one; a
 * pass (0) would end the chain under tcx. */
#define TC_ACT_NEXT -1
#define DNS_PORT 53
/* IPv6 extension headers followed before giving up (unparsed_l4). */
#define MAX_EXT_HEADERS 6
#define MAX_VLAN_TAGS 2
#define MAX_CIDRS 16384

struct lpm4 {
	__u32 prefixlen;
	__u8 addr[4];
};

struct lpm6 {
	__u32 prefixlen;
	__u8 addr[16];
};

#define LPM_MAP(name, keytype)                                                 \
	struct {                                                               \
		__uint(type, BPF_MAP_TYPE_LPM_TRIE);                           \
		__uint(max_entries, MAX_CIDRS);                                \
		__uint(map_flags, BPF_F_NO_PREALLOC);                          \
		__type(key, struct keytype);                                   \
		__type(value, __u8);                                           \
	} name SEC(".maps")

LPM_MAP(xdp_allow4_0, lpm4);
LPM_MAP(xdp_allow4_1, lpm4);
LPM_MAP(xdp_allow6_0, lpm6);
LPM_MAP(xdp_allow6_1, lpm6);
LPM_MAP(xdp_block4_0, lpm4);
LPM_MAP(xdp_block4_1, lpm4);
LPM_MAP(xdp_block6_0, lpm6);
LPM_MAP(xdp_block6_1, lpm6);

/* Scalars of both generations. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct tapio_xdp_policy);
} xdp_policy SEC(".maps");

/* [0]: the generation in force (0 or 1). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} xdp_active SEC(".maps");

/* Counters per (interface slot, reason): slot = ifindex % TAPIO_XDP_IF_SLOTS
 * (userspace refuses interfaces that share a slot). An array, not a hash:
 * this is touched by every packet. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TAPIO_XDP_IF_SLOTS * TAPIO_XDP_REASON_MAX);
	__type(key, __u32);
	__type(value, struct tapio_xdp_counter);
} xdp_counters SEC(".maps");

/* GCRA state per address (16 bytes, v4-mapped). */
struct addr16 {
	__u8 b[16];
};

#define RATE_MAP(name)                                                         \
	struct {                                                               \
		__uint(type, BPF_MAP_TYPE_LRU_HASH);                           \
		__uint(max_entries, 65536);                                    \
		__type(key, struct addr16);                                    \
		__type(value, __u64);                                          \
	} name SEC(".maps")

RATE_MAP(xdp_rate_src);
RATE_MAP(xdp_syn_src);
RATE_MAP(xdp_syn_dst);

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct addr16);
	__type(value, struct tapio_xdp_block_state);
} xdp_autoblock SEC(".maps");

/* A flow this host sent on, as an inbound packet of it looks: the remote
 * end is the source. */
struct flow_key {
	struct addr16 remote;
	__u16 remote_port; /* network order */
	__u16 local_port;  /* network order */
	__u8 proto;
	__u8 _pad[3];
};

/* Flows idle longer than this are no longer "established". */
#define FLOW_IDLE_NS (300ULL * 1000000000ULL)

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 131072);
	__type(key, struct flow_key);
	__type(value, __u64); /* last egress ns */
} xdp_flows SEC(".maps");

/* Remote addresses this host's TCP stack has sent a plain ACK to (ACK
 * set, SYN and RST clear): it does that only on a connection past the
 * handshake, which a spoofed source cannot complete (it never sees the
 * SYN-ACK). Such a peer is never auto-blocked. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct addr16);
	__type(value, __u64); /* last egress ns */
} xdp_peers SEC(".maps");

struct dns_key {
	struct addr16 server;
	__u16 local_port; /* network order */
	__u16 id;         /* DNS id, network order */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct dns_key);
	__type(value, __u64); /* query ns */
} xdp_dns_queries SEC(".maps");

/* What the parser found. */
struct pkt {
	struct addr16 src, dst;
	__u8 v6;
	__u8 proto;
	__u8 have_l4;  /* ports (and TCP flags) are valid */
	__u8 fragment; /* a later fragment: no transport header */
	__u16 sport, dport; /* network order */
	__u8 tcp_flags;
	__u32 l4_payload; /* UDP payload bytes (from the UDP header) */
	__u16 dns_id;     /* network order, UDP only, when the payload has one */
	__u8 have_dns_id;
};

#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04
#define TCP_FLAG_ACK 0x10

static __always_inline void map4(struct addr16 *a, __u32 v4)
{
	__builtin_memset(a, 0, sizeof(*a));
	a->b[10] = 0xff;
	a->b[11] = 0xff;
	__builtin_memcpy(&a->b[12], &v4, 4);
}

/* Parse UDP/TCP at `l4`. Returns 0, or -1 if truncated. */
static __always_inline int parse_l4(struct pkt *p, void *l4, void *end)
{
	if (p->proto == PROTO_TCP) {
		struct tcphdr *t = l4;
		if ((void *)(t + 1) > end)
			return -1;
		p->sport = t->source;
		p->dport = t->dest;
		p->tcp_flags = ((__u8 *)t)[13];
		p->have_l4 = 1;
	} else if (p->proto == PROTO_UDP) {
		struct udphdr *u = l4;
		if ((void *)(u + 1) > end)
			return -1;
		p->sport = u->source;
		p->dport = u->dest;
		__u16 len = bpf_ntohs(u->len);
		p->l4_payload = len > sizeof(*u) ? len - sizeof(*u) : 0;
		p->have_l4 = 1;
		__u16 *id = (void *)(u + 1);
		if ((void *)(id + 1) <= end) {
			p->dns_id = *id;
			p->have_dns_id = 1;
		}
	} else {
		/* ICMP and others: no ports; the address checks apply. */
		p->have_l4 = 1;
	}
	return 0;
}

enum parse_result {
	PARSE_OK = 0,
	PARSE_NOT_IP = 1,
	PARSE_MALFORMED = 2,   /* no usable IP header */
	PARSE_L4_MISSING = 3,  /* addresses valid, transport not found */
};

/* Bounded parse of Ethernet (+ up to 2 VLAN tags), IPv4/IPv6 (+ up to
 * MAX_EXT_HEADERS extension headers) and the UDP/TCP header. */
static __always_inline int parse(void *data, void *end, struct pkt *p)
{
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return PARSE_MALFORMED;
	__u16 proto = eth->h_proto;
	void *cur = eth + 1;
#pragma unroll
	for (int i = 0; i < MAX_VLAN_TAGS; i++) {
		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		struct vlan_hdr *vh = cur;
		if ((void *)(vh + 1) > end)
			return PARSE_MALFORMED;
		proto = vh->h_vlan_encapsulated_proto;
		cur = vh + 1;
	}
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = cur;
		if ((void *)(ip + 1) > end)
			return PARSE_MALFORMED;
		__u32 ihl = ip->ihl * 4;
		if (ip->version != 4 || ihl < sizeof(*ip))
			return PARSE_MALFORMED;
		/* Options cut off by the frame's end: the header cannot be read,
		 * so the stack gets it (and drops it), counted as malformed, not
		 * judged by its addresses. Found by the packet fuzzer. */
		if (cur + ihl > end)
			return PARSE_MALFORMED;
		map4(&p->src, ip->saddr);
		map4(&p->dst, ip->daddr);
		p->proto = ip->protocol;
		__u16 frag = bpf_ntohs(ip->frag_off);
		if (frag & 0x1fff) {
			p->fragment = 1;
			return PARSE_OK;
		}
		return parse_l4(p, cur + ihl, end) ? PARSE_L4_MISSING : PARSE_OK;
	}
	if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = cur;
		if ((void *)(ip6 + 1) > end)
			return PARSE_MALFORMED;
		if (ip6->version != 6)
			return PARSE_MALFORMED;
		p->v6 = 1;
		__builtin_memcpy(&p->src, &ip6->saddr, 16);
		__builtin_memcpy(&p->dst, &ip6->daddr, 16);
		__u8 nh = ip6->nexthdr;
		cur = ip6 + 1;
#pragma unroll
		for (int i = 0; i < MAX_EXT_HEADERS; i++) {
			if (nh == 0 || nh == 43 || nh == 60) {
				/* hop-by-hop, routing, destination options */
				__u8 *h = cur;
				if ((void *)(h + 2) > end)
					return PARSE_L4_MISSING;
				nh = h[0];
				cur += ((__u32)h[1] + 1) * 8;
			} else if (nh == 44) {
				/* fragment header: 8 bytes */
				__u8 *h = cur;
				if ((void *)(h + 8) > end)
					return PARSE_L4_MISSING;
				__u16 off = ((__u16)h[2] << 8 | h[3]) & 0xfff8;
				nh = h[0];
				cur += 8;
				if (off) {
					p->proto = nh;
					p->fragment = 1;
					return PARSE_OK;
				}
			} else if (nh == 51) {
				/* authentication header: (len + 2) * 4 bytes, 12 at
				 * least (RFC 4302: SPI and sequence number); a shorter
				 * one is malformed and nothing after it is read
				 * (found by the packet fuzzer). */
				__u8 *h = cur;
				if ((void *)(h + 2) > end || h[1] == 0)
					return PARSE_L4_MISSING;
				nh = h[0];
				cur += ((__u32)h[1] + 2) * 4;
			} else {
				break;
			}
		}
		p->proto = nh;
		if (nh == 0 || nh == 43 || nh == 60 || nh == 44 || nh == 51)
			return PARSE_L4_MISSING;
		if (cur > end)
			return PARSE_L4_MISSING;
		return parse_l4(p, cur, end) ? PARSE_L4_MISSING : PARSE_OK;
	}
	return PARSE_NOT_IP;
}

static __always_inline void count(__u32 ifindex, __u32 reason, __u64 bytes)
{
	__u32 k = (ifindex % TAPIO_XDP_IF_SLOTS) * TAPIO_XDP_REASON_MAX + reason;
	struct tapio_xdp_counter *c = bpf_map_lookup_elem(&xdp_counters, &k);
	if (c) {
		c->packets += 1;
		c->bytes += bytes;
	}
}

/* GCRA: 1 if a packet for `key` is within the rate, updating the state. */
static __always_inline int gcra_admit(void *map, struct addr16 *key, __u64 now,
				      __u64 interval, __u64 tolerance)
{
	__u64 *tat = bpf_map_lookup_elem(map, key);
	if (!tat) {
		__u64 next = now + interval;
		if (bpf_map_update_elem(map, key, &next, BPF_ANY))
			tapio_count_lost(&tapio_lost, TAPIO_LOST_MAP_FULL);
		return 1;
	}
	__u64 t = *tat > now ? *tat : now;
	if (t - now > tolerance)
		return 0;
	*tat = t + interval;
	return 1;
}

static __always_inline int in_lpm(int v6, __u32 gen, struct pkt *p, int block)
{
	if (v6) {
		struct lpm6 k = {.prefixlen = 128};
		__builtin_memcpy(k.addr, &p->src, 16);
		if (block)
			return gen ? bpf_map_lookup_elem(&xdp_block6_1, &k) != NULL
				   : bpf_map_lookup_elem(&xdp_block6_0, &k) != NULL;
		return gen ? bpf_map_lookup_elem(&xdp_allow6_1, &k) != NULL
			   : bpf_map_lookup_elem(&xdp_allow6_0, &k) != NULL;
	}
	struct lpm4 k = {.prefixlen = 32};
	__builtin_memcpy(k.addr, &p->src.b[12], 4);
	if (block)
		return gen ? bpf_map_lookup_elem(&xdp_block4_1, &k) != NULL
			   : bpf_map_lookup_elem(&xdp_block4_0, &k) != NULL;
	return gen ? bpf_map_lookup_elem(&xdp_allow4_1, &k) != NULL
		   : bpf_map_lookup_elem(&xdp_allow4_0, &k) != NULL;
}

static __always_inline void report_block(struct pkt *p, __u32 ifindex, __u64 now, __u64 until)
{
	struct tapio_xdp_block *e = tapio_reserve(&tapio_events, &tapio_lost, sizeof(*e));
	if (!e)
		return;
	__builtin_memset(&e->hdr, 0, sizeof(e->hdr));
	e->hdr.ts_ns = now;
	e->hdr.kind = TAPIO_EVENT_XDP_BLOCK;
	e->until_ns = until;
	e->ifindex = ifindex;
	e->reason = TAPIO_XDP_SYN_FLOOD;
	__builtin_memcpy(e->addr, &p->src, 16);
	tapio_submit(&tapio_events, e);
}

static __always_inline __u32 decide(void *data, void *end, __u32 ifindex, struct pkt *p)
{
	int r = parse(data, end, p);
	if (r == PARSE_NOT_IP)
		return TAPIO_XDP_NOT_IP;
	if (r == PARSE_MALFORMED)
		return TAPIO_XDP_MALFORMED;

	__u32 zero = 0;
	__u32 *active = bpf_map_lookup_elem(&xdp_active, &zero);
	__u32 gen = active && *active ? 1 : 0;
	struct tapio_xdp_policy *pol = bpf_map_lookup_elem(&xdp_policy, &gen);
	if (!pol)
		return TAPIO_XDP_PASS;
	__u32 f = pol->flags;
	/* The clock only for the checks that keep time. */
	__u64 now = (f & (TAPIO_XDP_F_SYN | TAPIO_XDP_F_RATE | TAPIO_XDP_F_DNS))
			    ? bpf_ktime_get_boot_ns()
			    : 0;

	if ((f & (p->v6 ? TAPIO_XDP_F_ALLOW6 : TAPIO_XDP_F_ALLOW4)) && in_lpm(p->v6, gen, p, 0))
		return TAPIO_XDP_ALLOWLIST;
	if ((f & (p->v6 ? TAPIO_XDP_F_BLOCK6 : TAPIO_XDP_F_BLOCK4)) && in_lpm(p->v6, gen, p, 1))
		return TAPIO_XDP_BLOCKLIST;

	int l4 = r == PARSE_OK && !p->fragment;
	if (l4 && (f & TAPIO_XDP_F_DNS) && p->proto == PROTO_UDP &&
	    p->sport == bpf_htons(DNS_PORT)) {
		if (pol->dns_max_size && p->l4_payload > pol->dns_max_size)
			return TAPIO_XDP_DNS_OVERSIZE;
		if (!p->have_dns_id)
			return TAPIO_XDP_DNS_UNSOLICITED;
		struct dns_key dk = {.local_port = p->dport, .id = p->dns_id};
		dk.server = p->src;
		__u64 *asked = bpf_map_lookup_elem(&xdp_dns_queries, &dk);
		if (!asked || now - *asked > pol->dns_window_ns)
			return TAPIO_XDP_DNS_UNSOLICITED;
		/* One response per query: a replayed response is unsolicited. */
		bpf_map_delete_elem(&xdp_dns_queries, &dk);
		return TAPIO_XDP_ESTABLISHED;
	}

	int syn = l4 && p->proto == PROTO_TCP &&
		  (p->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN;
	/* Conntrack only saves work when a rate check follows. */
	if (l4 && !syn && (f & (TAPIO_XDP_F_RATE | TAPIO_XDP_F_SYN)) &&
	    (p->proto == PROTO_TCP || p->proto == PROTO_UDP)) {
		struct flow_key fk = {.remote_port = p->sport, .local_port = p->dport,
				      .proto = p->proto};
		fk.remote = p->src;
		__u64 *seen = bpf_map_lookup_elem(&xdp_flows, &fk);
		if (seen && now - *seen < FLOW_IDLE_NS)
			return TAPIO_XDP_ESTABLISHED;
	}

	/* After the established check: a block must not cut flows this host
	 * already has with the source (its own connections out, too). Auto-blocks
	 * exist only while the SYN defence is on. */
	if (f & TAPIO_XDP_F_SYN) {
		struct tapio_xdp_block_state *blk = bpf_map_lookup_elem(&xdp_autoblock, &p->src);
		if (blk && blk->until_ns > now) {
			blk->dropped += 1;
			return TAPIO_XDP_AUTO_BLOCK;
		}
	}

	if (syn && (f & TAPIO_XDP_F_SYN)) {
		if (pol->syn_dst_interval_ns &&
		    !gcra_admit(&xdp_syn_dst, &p->dst, now, pol->syn_dst_interval_ns,
				pol->syn_dst_tolerance_ns))
			return TAPIO_XDP_SYN_FLOOD;
		if (!gcra_admit(&xdp_syn_src, &p->src, now, pol->syn_src_interval_ns,
				pol->syn_src_tolerance_ns)) {
			__u64 *peer = bpf_map_lookup_elem(&xdp_peers, &p->src);
			if (peer && now - *peer < FLOW_IDLE_NS)
				return TAPIO_XDP_SYN_FLOOD;
			struct tapio_xdp_block_state st = {
				.since_ns = now,
				.until_ns = now + pol->block_ns,
				.dropped = 1,
				.ifindex = ifindex,
			};
			if (bpf_map_update_elem(&xdp_autoblock, &p->src, &st, BPF_ANY))
				tapio_count_lost(&tapio_lost, TAPIO_LOST_MAP_FULL);
			else
				report_block(p, ifindex, now, st.until_ns);
			return TAPIO_XDP_SYN_FLOOD;
		}
	}

	if ((f & TAPIO_XDP_F_RATE) &&
	    !gcra_admit(&xdp_rate_src, &p->src, now, pol->rate_interval_ns,
			pol->rate_tolerance_ns))
		return TAPIO_XDP_RATE_LIMIT;

	if (p->fragment)
		return TAPIO_XDP_FRAGMENT;
	if (r == PARSE_L4_MISSING)
		return TAPIO_XDP_UNPARSED_L4;
	return TAPIO_XDP_PASS;
}

static __always_inline int drops(__u32 reason)
{
	return reason >= TAPIO_XDP_BLOCKLIST;
}

SEC("xdp")
int tapio_xdp_filter(struct xdp_md *ctx)
{
	/* Read the context once: clang may otherwise re-derive these loads
	 * from a modified ctx pointer, which the verifier refuses. */
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 ifindex = ctx->ingress_ifindex;
	struct pkt p = {};
	__u32 reason = decide(data, end, ifindex, &p);
	count(ifindex, reason, (__u64)(end - data));
	return drops(reason) ? XDP_DROP : XDP_PASS;
}

/* Egress: remember the flows this host sends on and its DNS queries. */
SEC("classifier")
int tapio_xdp_learn(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct pkt p = {};
	if (parse(data, end, &p) != PARSE_OK || p.fragment)
		return TC_ACT_NEXT;
	if (p.proto != PROTO_TCP && p.proto != PROTO_UDP)
		return TC_ACT_NEXT;
	__u32 zero = 0;
	__u32 *active = bpf_map_lookup_elem(&xdp_active, &zero);
	__u32 gen = active && *active ? 1 : 0;
	struct tapio_xdp_policy *pol = bpf_map_lookup_elem(&xdp_policy, &gen);
	__u32 f = pol ? pol->flags : 0;
	int flows = f & (TAPIO_XDP_F_RATE | TAPIO_XDP_F_SYN);
	int dns = (f & TAPIO_XDP_F_DNS) && p.proto == PROTO_UDP &&
		  p.dport == bpf_htons(DNS_PORT) && p.have_dns_id;
	if (!flows && !dns)
		return TC_ACT_NEXT;
	__u64 now = bpf_ktime_get_boot_ns();
	struct flow_key fk = {.remote_port = p.dport, .local_port = p.sport, .proto = p.proto};
	fk.remote = p.dst;
	/* Refresh at most once a second per flow: a map write per packet
	 * would cost more than the lookup it saves on ingress. */
	__u64 *seen = flows ? bpf_map_lookup_elem(&xdp_flows, &fk) : NULL;
	if (flows && (!seen || now - *seen > 1000000000ULL)) {
		if (bpf_map_update_elem(&xdp_flows, &fk, &now, BPF_ANY))
			tapio_count_lost(&tapio_lost, TAPIO_LOST_MAP_FULL);
	}
	/* A plain ACK: this host's stack is past the handshake with dst. */
	if ((f & TAPIO_XDP_F_SYN) && p.proto == PROTO_TCP &&
	    (p.tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_RST | TCP_FLAG_ACK)) == TCP_FLAG_ACK) {
		__u64 *last = bpf_map_lookup_elem(&xdp_peers, &p.dst);
		if (!last || now - *last > 1000000000ULL) {
			if (bpf_map_update_elem(&xdp_peers, &p.dst, &now, BPF_ANY))
				tapio_count_lost(&tapio_lost, TAPIO_LOST_MAP_FULL);
		}
	}
	if (dns) {
		struct dns_key dk = {.local_port = p.sport, .id = p.dns_id};
		dk.server = p.dst;
		if (bpf_map_update_elem(&xdp_dns_queries, &dk, &now, BPF_ANY))
			tapio_count_lost(&tapio_lost, TAPIO_LOST_MAP_FULL);
	}
	return TC_ACT_NEXT;
}
