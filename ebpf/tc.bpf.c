// SPDX-License-Identifier: GPL-2.0-only
/*
 * tc probe: a TC classifier on the ingress and egress of configured
 * interfaces (tcx links, or clsact filters on kernels before 6.6).
 *
 *  - Classify each flow's L7 protocol from its first payload bytes (either
 *    direction), remember it in an LRU map, and count packets and payload
 *    bytes per (interface, protocol, direction, server port) in per-CPU
 *    counters. A flow's packets before its protocol is known (handshake,
 *    HTTP/2 frames before the first DATA frame) are held in the flow entry
 *    and added when it is decided, so every packet lands under the
 *    protocol the flow turned out to be.
 *    Encrypted DNS is told apart from other TLS: DoT is TLS to a configured
 *    DoT port (853), DoH is TLS whose ClientHello names a configured
 *    resolver (its server name's hash is in tapio_tc_doh_names), or h2c
 *    whose HEADERS carry application/dns-message.
 *  - Weighted load balancing of IPv4 virtual services: a new flow arriving
 *    (ingress) for a virtual IP:port is DNATed to a backend picked by weight
 *    (an atomic round-robin over the weight slots, skipping backends whose
 *    circuit breaker is open); conntrack keeps the choice for the flow's
 *    lifetime, and replies (egress) are reverse-translated. Checksums are
 *    fixed incrementally.
 *    IPv4 fragments: the first fragment carries the ports and is translated
 *    with its flow; it leaves (source, destination, IP id) -> new address
 *    behind, and the later fragments (no ports) get the same address, so
 *    the receiver can reassemble the datagram. A later fragment to a
 *    virtual address whose first fragment was not seen (reordered ahead of
 *    it) passes unchanged and is counted.
 *  - Circuit breaker: per backend, SYN-ACKs and RSTs answering a steered
 *    SYN. The kernel opens a backend's breaker at max_failures in a row;
 *    userspace runs cool-down and half-open and writes the state back.
 *  - Chaos: packet loss (and EDT latency, where fq exists) per
 *    port/protocol/direction, each experiment with an expiry, all behind a
 *    kill switch; never on traffic with Tapio's own endpoints.
 *
 * Policy maps are double-buffered by generation: userspace writes the
 * generation the kernel is not reading, then flips tapio_tc_gen[0].
 */
#include "tapio_bpf.h"
#include "tapio_tls.h"

TAPIO_PROBE_MAPS();
typedef struct tapio_tc_flow tapio_tc_flow;
TAPIO_ABI_BTF(tapio_tc_flow);
typedef struct tapio_tc_key tapio_tc_key;
TAPIO_ABI_BTF(tapio_tc_key);
typedef struct tapio_tc_count tapio_tc_count;
TAPIO_ABI_BTF(tapio_tc_count);
typedef struct tapio_tc_addr tapio_tc_addr;
TAPIO_ABI_BTF(tapio_tc_addr);
typedef struct tapio_tc_service tapio_tc_service;
TAPIO_ABI_BTF(tapio_tc_service);
typedef struct tapio_tc_backend_stats tapio_tc_backend_stats;
TAPIO_ABI_BTF(tapio_tc_backend_stats);
typedef struct tapio_tc_chaos tapio_tc_chaos;
TAPIO_ABI_BTF(tapio_tc_chaos);
typedef struct tapio_tc_cfg tapio_tc_cfg;
TAPIO_ABI_BTF(tapio_tc_cfg);

/* Not our verdict: the next tcx program or tc filter decides (TCX_NEXT). */
#define TC_ACT_UNSPEC -1
#define TC_ACT_SHOT 2
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_HLEN 14
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10

/* Flows an HTTP/2 connection may carry before we give up looking for a
 * gRPC DATA frame and call it plain HTTP/2. */
#define H2_DECIDE_PACKETS 16
/* HTTP/2 frames walked per packet looking for a DATA frame. */
#define H2_MAX_FRAMES 8
/* HEADERS payload bytes searched for application/dns-message. */
#define H2_HEADERS_SCAN 256
/* Length of the patterns searched for (see tapio_tc_h2_doh). */
#define H2_PAT 16

/* A flow, both directions: the lower (addr, port) end first. */
struct flow_key {
	__u8 lo_addr[16];
	__u8 hi_addr[16];
	__u16 lo_port;
	__u16 hi_port;
	__u8 l4proto;
	__u8 _pad[3];
};

enum flow_state {
	FLOW_PENDING = 0, /* no payload seen yet: counts held */
	FLOW_H2 = 1,      /* HTTP/2 preface seen, gRPC not yet told apart */
	FLOW_DECIDED = 2, /* counted straight into tapio_tc_counts */
};

struct flow {
	__u64 pend_pkts[2];  /* by direction, while not decided */
	__u64 pend_bytes[2];
	__u16 server_port;   /* host order */
	__u8 server_is_lo;   /* the server is the key's lo end */
	__u8 proto;          /* enum tapio_tc_proto */
	__u8 state;          /* enum flow_state */
	__u8 h2_packets;     /* payload packets seen in FLOW_H2 */
	__u8 _pad[2];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct flow_key);
	__type(value, struct flow);
} tapio_tc_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct tapio_tc_key);
	__type(value, struct tapio_tc_count);
} tapio_tc_counts SEC(".maps");

/* DoT server ports (host order), from probes.dns.encrypted.dot_ports. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u16);
	__type(value, __u8);
} tapio_tc_dot_ports SEC(".maps");

/* Hashes (tapio_tls_name_hash) of the configured DoH resolver names. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TAPIO_DOH_MAX_NAMES);
	__type(key, __u64);
	__type(value, __u8);
} tapio_tc_doh_names SEC(".maps");

/* Per-CPU scratch: a server name being hashed, or HEADERS bytes being
 * searched (with room for a pattern read past the last start). */
struct tc_scratch {
	__u8 b[H2_HEADERS_SCAN + H2_PAT];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tc_scratch);
} tapio_tc_scratch SEC(".maps");

static __always_inline __u8 *scratch(void)
{
	__u32 zero = 0;
	struct tc_scratch *s = bpf_map_lookup_elem(&tapio_tc_scratch, &zero);
	return s ? s->b : NULL;
}

/* Active policy generation (0 or 1), flipped by userspace. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} tapio_tc_gen SEC(".maps");

/* Per-generation switches. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct tapio_tc_cfg);
} tapio_tc_cfgs SEC(".maps");

/* Virtual services; the key's `gen` says which generation. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2 * TAPIO_TC_MAX_SERVICES);
	__type(key, struct tapio_tc_addr);
	__type(value, struct tapio_tc_service);
} tapio_tc_services SEC(".maps");

/* Round-robin position per virtual service (key gen 0). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4 * TAPIO_TC_MAX_SERVICES);
	__type(key, struct tapio_tc_addr);
	__type(value, __u64);
} tapio_tc_rr SEC(".maps");

/* Circuit-breaker state per backend (enum tapio_tc_cb_state), from
 * userspace. Absent means closed. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TAPIO_TC_MAX_SERVICES * TAPIO_TC_MAX_BACKENDS);
	__type(key, struct tapio_tc_addr);
	__type(value, __u32);
} tapio_tc_cb SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, TAPIO_TC_MAX_SERVICES * TAPIO_TC_MAX_BACKENDS * 2);
	__type(key, struct tapio_tc_addr);
	__type(value, struct tapio_tc_backend_stats);
} tapio_tc_bstats SEC(".maps");

/* Failures in a row per backend, shared by every CPU (atomic adds) so the
 * breaker opens in the kernel at exactly max_failures, however late
 * userspace's next tick comes; a success resets it. Userspace runs the
 * cool-down and half-open steps. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TAPIO_TC_MAX_SERVICES * TAPIO_TC_MAX_BACKENDS);
	__type(key, struct tapio_tc_addr);
	__type(value, __u64);
} tapio_tc_cb_run SEC(".maps");

/* Chaos experiments: generation * TAPIO_TC_MAX_CHAOS + slot. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * TAPIO_TC_MAX_CHAOS);
	__type(key, __u32);
	__type(value, struct tapio_tc_chaos);
} tapio_tc_experiments SEC(".maps");

/* Packets dropped by each chaos slot (generation * MAX + slot). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2 * TAPIO_TC_MAX_CHAOS);
	__type(key, __u32);
	__type(value, __u64);
} tapio_tc_chaos_drops SEC(".maps");

/* Chaos deadlines by experiment (a hash of its definition and the
 * interfaces), for userspace only: tc.rs pins this map so a restarted
 * Tapio keeps each running experiment's original deadline. */
struct chaos_deadline {
	__u64 deadline_ns; /* CLOCK_BOOTTIME */
	__u64 owner;       /* hash of the interfaces, so instances keep apart */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, struct chaos_deadline);
} tapio_tc_deadlines SEC(".maps");

/* Tapio's own endpoints (its OTLP collector, its OpAMP server): chaos
 * never touches traffic to or from them. */
struct endpoint_key {
	__u8 addr[16]; /* v4-mapped */
	__u16 port;    /* network order */
	__u8 _pad[2];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct endpoint_key);
	__type(value, __u8);
} tapio_tc_exempt SEC(".maps");

static __always_inline int exempt(const __u8 *addr, __u16 port)
{
	struct endpoint_key k = { .port = bpf_htons(port) };
	__builtin_memcpy(k.addr, addr, 16);
	return bpf_map_lookup_elem(&tapio_tc_exempt, &k) != NULL;
}

/* Load-balancer conntrack. Forward: client -> virtual address, keyed by
 * (client addr/port, virtual addr/port). */
struct ct_key {
	__u32 client_addr;
	__u32 vip_addr;
	__u16 client_port;
	__u16 vip_port;
	__u8 proto;
	__u8 _pad[3];
};

enum ct_state {
	CT_SYN_SENT = 0,
	CT_ESTABLISHED = 1,
	CT_FAILED = 2,  /* the backend answered the SYN with a RST */
	CT_CLOSING = 3, /* a FIN or RST went either way */
};

struct ct_val {
	__u64 created_ns;   /* CLOCK_BOOTTIME ns of the first packet */
	__u32 backend_addr;
	__u16 backend_port;
	__u8 state;         /* enum ct_state */
	__u8 syn_retried;   /* a retransmitted SYN was counted as a failure */
};

/* Reverse: backend -> client, keyed by (client addr/port, backend
 * addr/port), giving the virtual address to restore. */
struct rnat_val {
	__u32 vip_addr;
	__u16 vip_port;
	__u16 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct ct_key);
	__type(value, struct ct_val);
} tapio_tc_ct SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct ct_key);
	__type(value, struct rnat_val);
} tapio_tc_rnat SEC(".maps");

/* Fragments: (source, destination, IP id, protocol, direction) of a
 * translated first fragment -> the address its later fragments get. */
struct frag_key {
	__u32 saddr;
	__u32 daddr;
	__u16 id; /* network order */
	__u8 proto;
	__u8 dir;
};

struct frag_val {
	__u64 created_ns; /* CLOCK_BOOTTIME */
	__u32 addr;       /* network order */
	__u32 _pad;
};

/* The kernel's default reassembly timeout (net.ipv4.ipfrag_time): an older
 * entry belongs to another datagram that reused the IP id. */
#define FRAG_MAX_AGE_NS (30ULL * 1000000000ULL)

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct frag_key);
	__type(value, struct frag_val);
} tapio_tc_frags SEC(".maps");

/* Virtual addresses (any port) of each generation, for counting the
 * later fragments that could not be translated. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2 * TAPIO_TC_MAX_SERVICES);
	__type(key, struct tapio_tc_addr);
	__type(value, __u8);
} tapio_tc_vips SEC(".maps");

enum frag_counter {
	FRAG_TRANSLATED = 0, /* a later fragment got its first fragment's address */
	FRAG_UNMATCHED = 1,  /* a later fragment to a virtual address, first not seen */
	FRAG_COUNTERS = 2,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FRAG_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} tapio_tc_frag_counts SEC(".maps");

/* What the parser found. */
struct pkt {
	__u8 saddr[16];
	__u8 daddr[16];
	__u32 l3_off;
	__u32 l4_off;
	__u32 payload_off;
	__u32 payload_len;
	__u16 sport; /* host order */
	__u16 dport;
	__u16 family;
	__u8 l4proto;
	__u8 tcp_flags;
	__u32 v4_saddr; /* network order, IPv4 only */
	__u32 v4_daddr;
	__u16 ip_id;    /* network order, IPv4 only */
	__u8 more_frags; /* IPv4 MF: a first fragment when the offset is 0 */
};

/* parse(): a later IPv4 fragment (addresses, protocol and id valid; no
 * transport header). */
#define PARSE_LATER_FRAGMENT 1

static __always_inline int parse(struct __sk_buff *skb, struct pkt *p)
{
	__u16 proto = bpf_ntohs(skb->protocol);
	p->l3_off = ETH_HLEN;
	if (proto == ETH_P_IP) {
		struct iphdr ip;
		if (bpf_skb_load_bytes(skb, p->l3_off, &ip, sizeof(ip)))
			return -1;
		/* The version too: a frame whose ethertype says IPv4 but whose
		 * header does not is not IPv4 (the stack drops it); without
		 * this check chaos and the balancer acted on it (found by the
		 * packet fuzzer). */
		if (ip.version != 4 || ip.ihl < 5)
			return -1;
		p->family = 2;
		p->l4proto = ip.protocol;
		p->l4_off = p->l3_off + ip.ihl * 4;
		__builtin_memset(p->saddr, 0, 16);
		__builtin_memset(p->daddr, 0, 16);
		p->saddr[10] = 0xff;
		p->saddr[11] = 0xff;
		p->daddr[10] = 0xff;
		p->daddr[11] = 0xff;
		__builtin_memcpy(&p->saddr[12], &ip.saddr, 4);
		__builtin_memcpy(&p->daddr[12], &ip.daddr, 4);
		p->v4_saddr = ip.saddr;
		p->v4_daddr = ip.daddr;
		__u16 frag = bpf_ntohs(ip.frag_off);
		p->ip_id = ip.id;
		p->more_frags = (frag & 0x2000) != 0;
		/* Fragments other than the first carry no L4 header. */
		if (frag & 0x1fff)
			return PARSE_LATER_FRAGMENT;
		__u32 tot = bpf_ntohs(ip.tot_len);
		if (tot < ip.ihl * 4)
			return -1;
		p->payload_len = tot - ip.ihl * 4; /* L4 length for now */
	} else if (proto == ETH_P_IPV6) {
		struct ipv6hdr ip6;
		if (bpf_skb_load_bytes(skb, p->l3_off, &ip6, sizeof(ip6)))
			return -1;
		if (ip6.version != 6)
			return -1;
		/* Extension headers are not walked: such packets are not
		 * classified (they are rare on TCP/UDP paths). */
		p->family = 10;
		p->l4proto = ip6.nexthdr;
		p->l4_off = p->l3_off + sizeof(ip6);
		__builtin_memcpy(p->saddr, &ip6.saddr, 16);
		__builtin_memcpy(p->daddr, &ip6.daddr, 16);
		p->v4_saddr = 0;
		p->v4_daddr = 0;
		p->payload_len = bpf_ntohs(ip6.payload_len);
	} else {
		return -1;
	}
	if (p->l4proto == IPPROTO_TCP) {
		struct tcphdr th;
		if (bpf_skb_load_bytes(skb, p->l4_off, &th, sizeof(th)))
			return -1;
		__u32 doff = th.doff * 4;
		if (doff < 20 || doff > p->payload_len)
			return -1;
		p->sport = bpf_ntohs(th.source);
		p->dport = bpf_ntohs(th.dest);
		p->tcp_flags = ((__u8 *)&th)[13];
		p->payload_off = p->l4_off + doff;
		p->payload_len -= doff;
	} else if (p->l4proto == IPPROTO_UDP) {
		struct udphdr uh;
		if (bpf_skb_load_bytes(skb, p->l4_off, &uh, sizeof(uh)))
			return -1;
		if (p->payload_len < 8)
			return -1;
		p->sport = bpf_ntohs(uh.source);
		p->dport = bpf_ntohs(uh.dest);
		p->tcp_flags = 0;
		p->payload_off = p->l4_off + 8;
		p->payload_len -= 8;
	} else {
		return -1;
	}
	return 0;
}

static __always_inline int addr_cmp(const __u8 *a, const __u8 *b)
{
#pragma unroll
	for (int i = 0; i < 16; i++) {
		if (a[i] != b[i])
			return a[i] < b[i] ? -1 : 1;
	}
	return 0;
}

static __always_inline __u32 be32(const __u8 *b)
{
	return ((__u32)b[0] << 24) | ((__u32)b[1] << 16) | ((__u32)b[2] << 8) | b[3];
}

static __always_inline int starts(const __u8 *b, const char *s, int n)
{
	for (int i = 0; i < n; i++)
		if (b[i] != (__u8)s[i])
			return 0;
	return 1;
}

/* Does the HEADERS payload at [off, end) carry application/dns-message,
 * as a content-type (POST) or accept (GET) value: a DoH request or
 * response? The block is HPACK; without a dynamic-table decoder the value
 * is found as bytes: its last 16 bytes plain, or the whole of it
 * Huffman-coded (16 bytes; what nghttp2 and most encoders send). That is
 * what a literal (first use on a connection) carries; a later reference
 * to the dynamic table is not seen, but the first request decides.
 * Global (not static): the verifier checks it once, not at each call site
 * in each state of the flow code. */
__noinline int tapio_tc_h2_doh(struct __sk_buff *skb, __u32 off, __u32 end)
{
	/* Little-endian loads of "tion/dns" "-message", and of the Huffman
	 * code 1d75d0620d263d4c 495216a4a840e62f. */
	const __u64 r0 = 0x736e642f6e6f6974ULL, r1 = 0x6567617373656d2dULL;
	const __u64 h0 = 0x4c3d260d62d0751dULL, h1 = 0x2fe640a8a4165249ULL;
	__u8 *b = scratch();
	if (!b || end <= off)
		return 0;
	__u32 n = end - off;
	if (n < H2_PAT)
		return 0;
	if (n > H2_HEADERS_SCAN)
		n = H2_HEADERS_SCAN;
	if (bpf_skb_load_bytes(skb, off, b, TAPIO_LEN_1_TO(n, H2_HEADERS_SCAN)))
		return 0;
	/* Not unrolled: one pass of the verifier per start position. Unaligned
	 * 8-byte loads from the map value are fine where BPF runs. */
#pragma clang loop unroll(disable)
	for (__u32 i = 0; i + H2_PAT <= H2_HEADERS_SCAN; i++) {
		if (i + H2_PAT > n)
			break;
		__u64 a = *(__u64 *)(b + i), c = *(__u64 *)(b + i + 8);
		if ((a == r0 && c == r1) || (a == h0 && c == h1))
			return 1;
	}
	return 0;
}

/* Walk the HTTP/2 frames starting at `off`: 2 = a HEADERS frame carrying
 * application/dns-message (DoH), 1 = a DATA frame carrying a gRPC message
 * (the 5-byte gRPC length prefix), -1 = a DATA frame that is not gRPC,
 * 0 = none of these seen. */
static __always_inline int h2_grpc(struct __sk_buff *skb, __u32 off, __u32 end)
{
	for (int i = 0; i < H2_MAX_FRAMES; i++) {
		__u8 h[14];
		if (off + 9 > end)
			return 0;
		if (bpf_skb_load_bytes(skb, off, h, 9))
			return 0;
		__u32 len = ((__u32)h[0] << 16) | ((__u32)h[1] << 8) | h[2];
		if (h[3] == 1 /* HEADERS */) {
			__u32 fend = off + 9 + len < end ? off + 9 + len : end;
			if (tapio_tc_h2_doh(skb, off + 9, fend))
				return 2;
		}
		if (h[3] == 0 /* DATA */) {
			if (len < 5 || off + 14 > end)
				return len < 5 ? -1 : 0;
			if (bpf_skb_load_bytes(skb, off + 9, &h[9], 5))
				return 0;
			/* A padded DATA frame puts a pad length first. */
			if ((h[4] & 0x8) == 0 && h[9] <= 1 && be32(&h[10]) == len - 5)
				return 1;
			return -1;
		}
		off += 9 + len;
	}
	return 0;
}

/* Classify from the first payload bytes. */
static __always_inline __u8 classify(const __u8 *b, __u32 n, __u16 server_port,
				     int from_server, __u8 l4proto, __u32 payload_len)
{
	if (n >= 6 && b[0] == 0x16 && b[1] == 0x03 && b[2] <= 0x04 &&
	    (b[5] == 0x01 || b[5] == 0x02))
		/* DoT and DoH are told apart by the caller (tls_kind). */
		return TAPIO_TC_TLS;
	if (n >= 16 && starts(b, "PRI * HTTP/2.0\r\n", 16))
		return TAPIO_TC_HTTP2;
	/* An HTTP/2 server may speak first: its SETTINGS frame (type 4, not an
	 * ACK, stream 0, a whole number of 6-byte settings) can reach the wire
	 * before the client's preface, and under load it often does. */
	if (from_server && n >= 9 && b[3] == 0x04 && b[4] == 0 && b[5] == 0 && b[6] == 0 &&
	    b[7] == 0 && b[8] == 0 && b[0] == 0) {
		__u32 len = ((__u32)b[1] << 8) | b[2];
		if (len % 6 == 0 && len <= 6 * 16)
			return TAPIO_TC_HTTP2;
	}
	if (n >= 5 && (starts(b, "GET ", 4) || starts(b, "POST", 4) || starts(b, "PUT ", 4) ||
		       starts(b, "HEAD", 4) || starts(b, "DELE", 4) || starts(b, "PATC", 4) ||
		       starts(b, "OPTI", 4) || starts(b, "CONN", 4) || starts(b, "TRAC", 4) ||
		       starts(b, "HTTP/1.", 7)))
		return TAPIO_TC_HTTP;
	if ((server_port == 53 || server_port == 5353) && n >= 12) {
		/* over TCP the message has a 2-byte length first */
		__u16 qd_udp = ((__u16)b[4] << 8) | b[5];
		__u16 qd_tcp = ((__u16)b[6] << 8) | b[7];
		__u16 qd = l4proto == IPPROTO_TCP ? qd_tcp : qd_udp;
		if (qd >= 1 && qd <= 16)
			return TAPIO_TC_DNS;
	}
	if (n >= 4 && (b[0] == '*' || b[0] == '$' || b[0] == '+') && b[1] >= '0' && b[1] <= '9' &&
	    (b[2] == '\r' || b[3] == '\r'))
		return TAPIO_TC_REDIS;
	if (n >= 8 && !from_server) {
		__u32 len = be32(b), code = be32(b + 4);
		if ((code == 196608 || code == 80877103 || code == 80877104 || code == 80877102) &&
		    len >= 8 && len <= 10000)
			return TAPIO_TC_POSTGRESQL;
	}
	if (n >= 6 && from_server) {
		__u32 len = b[0] | ((__u32)b[1] << 8) | ((__u32)b[2] << 16);
		if (b[3] == 0 && b[4] == 10 && b[5] >= '0' && b[5] <= '9' && len + 4 <= payload_len)
			return TAPIO_TC_MYSQL;
	}
	if (n >= 12 && !from_server && l4proto == IPPROTO_TCP) {
		__u32 len = be32(b);
		__u16 api_key = ((__u16)b[4] << 8) | b[5];
		__u16 api_ver = ((__u16)b[6] << 8) | b[7];
		if (len + 4 == payload_len && api_key <= 74 && api_ver <= 20)
			return TAPIO_TC_KAFKA;
	}
	return TAPIO_TC_UNKNOWN;
}

/* Copy the SNI of a ClientHello starting at `off` into `out`. */
static __always_inline void tls_sni(struct __sk_buff *skb, __u32 off, __u32 end,
				    struct tapio_tc_flow *out)
{
	__u32 no = 0, n = 0;
	if (tapio_tls_sni(skb, off, end, &no, &n))
		return;
	if (n > TAPIO_TC_SNI_LEN) {
		out->flags |= TAPIO_TC_SNI_CUT;
		n = TAPIO_TC_SNI_LEN;
	}
	if (bpf_skb_load_bytes(skb, no, out->sni, TAPIO_LEN_1_TO(n, TAPIO_TC_SNI_LEN)))
		return;
	out->sni_len = n;
}

/* Is the ClientHello at `off` for a configured DoH resolver? Global, so
 * verified once. */
__noinline int tapio_tc_doh_sni(struct __sk_buff *skb, __u32 off, __u32 end)
{
	__u8 *buf = scratch();
	if (!buf)
		return 0;
	__u64 h = tapio_tls_sni_hash(skb, off, end, buf);
	return h && bpf_map_lookup_elem(&tapio_tc_doh_names, &h) != NULL;
}

/* Encrypted DNS among TLS flows: DoT by the server port, DoH by the
 * ClientHello's server name. Either way the name is hidden afterwards. */
static __always_inline __u8 tls_kind(struct __sk_buff *skb, struct pkt *p, __u16 server_port,
				     const __u8 *b, __u32 n, int from_server)
{
	if (bpf_map_lookup_elem(&tapio_tc_dot_ports, &server_port))
		return TAPIO_TC_DOT;
	if (from_server || !tapio_tls_client_hello(b, n))
		return TAPIO_TC_TLS;
	return tapio_tc_doh_sni(skb, p->payload_off, p->payload_off + p->payload_len)
		       ? TAPIO_TC_DOH
		       : TAPIO_TC_TLS;
}

static __always_inline void count(struct tapio_tc_key *k, __u64 pkts, __u64 bytes)
{
	struct tapio_tc_count *c = bpf_map_lookup_elem(&tapio_tc_counts, k);
	if (c) {
		c->packets += pkts;
		c->bytes += bytes;
		return;
	}
	struct tapio_tc_count init = { .packets = pkts, .bytes = bytes };
	if (bpf_map_update_elem(&tapio_tc_counts, k, &init, BPF_NOEXIST)) {
		c = bpf_map_lookup_elem(&tapio_tc_counts, k);
		if (c) {
			c->packets += pkts;
			c->bytes += bytes;
		} else {
			tapio_count_lost(&tapio_lost, TAPIO_LOST_MAP_FULL);
		}
	}
}

/* Move the held counts of a flow into the counters under its protocol. */
static __always_inline void flush(struct flow *f, __u32 ifindex)
{
	struct tapio_tc_key k = { .ifindex = ifindex, .server_port = f->server_port,
				  .proto = f->proto };
#pragma unroll
	for (int d = 0; d < 2; d++) {
		__u64 pk = f->pend_pkts[d], by = f->pend_bytes[d];
		if (!pk && !by)
			continue;
		/* Subtract what was read, not zero: a packet counted on another
		 * CPU meanwhile is kept for the next flush. */
		__sync_fetch_and_add(&f->pend_pkts[d], -pk);
		__sync_fetch_and_add(&f->pend_bytes[d], -by);
		k.direction = d;
		count(&k, pk, by);
	}
}

static __always_inline void emit_flow(struct __sk_buff *skb, struct pkt *p, struct flow *f,
				      int from_server)
{
	struct tapio_tc_flow *e = tapio_reserve(&tapio_events, &tapio_lost, sizeof(*e));
	if (!e)
		return;
	__builtin_memset(&e->hdr, 0, sizeof(e->hdr));
	e->hdr.ts_ns = bpf_ktime_get_boot_ns();
	e->hdr.kind = TAPIO_EVENT_TC_FLOW;
	if (from_server) {
		__builtin_memcpy(e->tuple.saddr, p->daddr, 16);
		__builtin_memcpy(e->tuple.daddr, p->saddr, 16);
		e->tuple.sport = p->dport;
		e->tuple.dport = p->sport;
	} else {
		__builtin_memcpy(e->tuple.saddr, p->saddr, 16);
		__builtin_memcpy(e->tuple.daddr, p->daddr, 16);
		e->tuple.sport = p->sport;
		e->tuple.dport = p->dport;
	}
	e->tuple.family = p->family;
	e->tuple._pad0 = 0;
	e->ifindex = skb->ifindex;
	e->proto = f->proto;
	e->l4proto = p->l4proto;
	e->flags = 0;
	e->sni_len = 0;
	e->_pad0 = 0;
	__u8 rec = 0;
	/* A DoH flow may be h2c: only a TLS record has a server name. */
	if ((f->proto == TAPIO_TC_TLS || f->proto == TAPIO_TC_DOT || f->proto == TAPIO_TC_DOH) &&
	    !from_server && !bpf_skb_load_bytes(skb, p->payload_off, &rec, 1) && rec == 0x16)
		tls_sni(skb, p->payload_off, p->payload_off + p->payload_len, e);
	tapio_submit(&tapio_events, e);
}

static __always_inline __u8 h2_proto(int g)
{
	return g == 2 ? TAPIO_TC_DOH : g == 1 ? TAPIO_TC_GRPC : TAPIO_TC_HTTP2;
}

/* Flow tracking, classification and counting. */
static __always_inline void observe(struct __sk_buff *skb, struct pkt *p, __u8 dir)
{
	struct flow_key fk = {};
	int src_is_lo = addr_cmp(p->saddr, p->daddr) < 0 ||
			(addr_cmp(p->saddr, p->daddr) == 0 && p->sport <= p->dport);
	if (src_is_lo) {
		__builtin_memcpy(fk.lo_addr, p->saddr, 16);
		__builtin_memcpy(fk.hi_addr, p->daddr, 16);
		fk.lo_port = p->sport;
		fk.hi_port = p->dport;
	} else {
		__builtin_memcpy(fk.lo_addr, p->daddr, 16);
		__builtin_memcpy(fk.hi_addr, p->saddr, 16);
		fk.lo_port = p->dport;
		fk.hi_port = p->sport;
	}
	fk.l4proto = p->l4proto;

	__u64 segs = skb->gso_segs ? skb->gso_segs : 1;
	__u64 bytes = p->payload_len;
	if (skb->gso_segs > 1) {
		/* A GSO packet: payload of every segment (gso headers repeat). */
		__u32 hdrs = p->payload_off;
		bytes = skb->len > hdrs * segs ? skb->len - hdrs * segs : p->payload_len;
		if (bytes < p->payload_len)
			bytes = p->payload_len;
	}

	struct flow *f = bpf_map_lookup_elem(&tapio_tc_flows, &fk);
	if (!f) {
		struct flow nf = {};
		int src_is_server;
		if (p->l4proto == IPPROTO_TCP && (p->tcp_flags & TCP_SYN))
			src_is_server = (p->tcp_flags & TCP_ACK) != 0;
		else
			/* UDP or mid-stream: the lower port is the service. */
			src_is_server = p->sport < p->dport;
		nf.server_port = src_is_server ? p->sport : p->dport;
		nf.server_is_lo = src_is_server == src_is_lo;
		if (bpf_map_update_elem(&tapio_tc_flows, &fk, &nf, BPF_NOEXIST) &&
		    !bpf_map_lookup_elem(&tapio_tc_flows, &fk)) {
			tapio_count_lost(&tapio_lost, TAPIO_LOST_MAP_FULL);
			return;
		}
		f = bpf_map_lookup_elem(&tapio_tc_flows, &fk);
		if (!f)
			return;
	}
	if (p->l4proto == IPPROTO_TCP && (p->tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN &&
	    f->state != FLOW_PENDING) {
		/* A new connection on the tuple of an old one (ports are
		 * reused; entries are not deleted at FIN, so the last ACKs are
		 * still counted under the old flow's protocol): start over. */
		flush(f, skb->ifindex);
		f->state = FLOW_PENDING;
		f->proto = TAPIO_TC_UNKNOWN;
		f->h2_packets = 0;
		f->server_port = p->dport;
		f->server_is_lo = !src_is_lo;
	}
	int from_server = f->server_is_lo == src_is_lo;

	if (f->state == FLOW_DECIDED) {
		struct tapio_tc_key k = { .ifindex = skb->ifindex, .server_port = f->server_port,
					  .proto = f->proto, .direction = dir };
		count(&k, segs, bytes);
		return;
	}
	__sync_fetch_and_add(&f->pend_pkts[dir & 1], segs);
	__sync_fetch_and_add(&f->pend_bytes[dir & 1], bytes);

	int ends = p->l4proto == IPPROTO_TCP && (p->tcp_flags & (TCP_FIN | TCP_RST));
	if (p->payload_len == 0) {
		if (ends) {
			/* The flow ends undecided: count it as what it is so far. */
			if (f->state == FLOW_PENDING)
				f->proto = TAPIO_TC_UNKNOWN;
			f->state = FLOW_DECIDED;
			flush(f, skb->ifindex);
		}
		return;
	}

	if (f->state == FLOW_PENDING) {
		__u8 b[16] = {};
		__u32 n = p->payload_len;
		if (n >= 16) {
			n = 16;
			if (bpf_skb_load_bytes(skb, p->payload_off, b, 16))
				n = 0;
		} else if (n > 0) {
			if (bpf_skb_load_bytes(skb, p->payload_off, b, TAPIO_LEN_1_TO(n, 16)))
				n = 0;
		}
		__u8 proto = classify(b, n, f->server_port, from_server, p->l4proto,
				      p->payload_len);
		if (proto == TAPIO_TC_TLS && p->l4proto == IPPROTO_TCP)
			proto = tls_kind(skb, p, f->server_port, b, n, from_server);
		f->proto = proto;
		if (proto == TAPIO_TC_HTTP2) {
			f->state = FLOW_H2;
			/* The client's preface (24 bytes) may be followed by frames;
			 * a server's first segment is frames from the start. */
			__u32 first = from_server ? 0 : 24;
			int g = h2_grpc(skb, p->payload_off + first, p->payload_off + p->payload_len);
			if (g != 0) {
				f->proto = h2_proto(g);
				f->state = FLOW_DECIDED;
			}
		} else {
			f->state = FLOW_DECIDED;
		}
	} else if (f->state == FLOW_H2) {
		/* After a server-first SETTINGS, the client's preface comes here. */
		__u32 skip = 0;
		if (!from_server && p->payload_len >= 24) {
			__u8 b[16];
			if (!bpf_skb_load_bytes(skb, p->payload_off, b, 16) &&
			    starts(b, "PRI * HTTP/2.0\r\n", 16))
				skip = 24;
		}
		int g = h2_grpc(skb, p->payload_off + skip, p->payload_off + p->payload_len);
		f->h2_packets += 1;
		if (g != 0 || f->h2_packets >= H2_DECIDE_PACKETS || ends) {
			f->proto = h2_proto(g);
			f->state = FLOW_DECIDED;
		}
	}
	if (f->state == FLOW_DECIDED) {
		flush(f, skb->ifindex);
		emit_flow(skb, p, f, from_server);
	}
}

static __always_inline __u32 generation(void)
{
	__u32 zero = 0;
	__u32 *g = bpf_map_lookup_elem(&tapio_tc_gen, &zero);
	return g ? (*g & 1) : 0;
}

/* Chaos: 1 = drop this packet. */
static __always_inline int chaos(struct __sk_buff *skb, struct pkt *p, __u8 dir, __u32 gen)
{
	struct tapio_tc_cfg *cfg = bpf_map_lookup_elem(&tapio_tc_cfgs, &gen);
	if (!cfg || cfg->chaos_off || cfg->n_chaos == 0)
		return 0;
	if (exempt(p->saddr, p->sport) || exempt(p->daddr, p->dport))
		return 0;
	__u64 now = bpf_ktime_get_boot_ns();
	for (__u32 i = 0; i < TAPIO_TC_MAX_CHAOS; i++) {
		if (i >= cfg->n_chaos)
			break;
		__u32 slot = gen * TAPIO_TC_MAX_CHAOS + i;
		struct tapio_tc_chaos *c = bpf_map_lookup_elem(&tapio_tc_experiments, &slot);
		if (!c || now >= c->expires_ns)
			continue;
		if (c->direction != 2 && c->direction != dir)
			continue;
		if (c->proto && c->proto != p->l4proto)
			continue;
		if (c->port && c->port != p->sport && c->port != p->dport)
			continue;
		/* U32_MAX is loss 1.0: every packet, not all but the one draw of
		 * U32_MAX that `<` would let through (the packet fuzzer saw it). */
		if (c->loss_threshold &&
		    (c->loss_threshold == 0xffffffff ||
		     bpf_get_prandom_u32() < c->loss_threshold)) {
			__u64 *n = bpf_map_lookup_elem(&tapio_tc_chaos_drops, &slot);
			if (n)
				*n += 1;
			return 1;
		}
		if (c->delay_ns && dir == TAPIO_TC_EGRESS) {
			/* Earliest departure time: honoured by the fq qdisc only;
			 * userspace refuses latency experiments without it. */
			__u64 t = skb->tstamp > now ? skb->tstamp : now;
			skb->tstamp = t + c->delay_ns;
		}
	}
	return 0;
}

#define IP_CSUM_OFF (ETH_HLEN + offsetof(struct iphdr, check))
#define IP_DST_OFF (ETH_HLEN + offsetof(struct iphdr, daddr))
#define IP_SRC_OFF (ETH_HLEN + offsetof(struct iphdr, saddr))

static __always_inline void bstat(struct tapio_tc_addr *b, int what)
{
	struct tapio_tc_backend_stats *s = bpf_map_lookup_elem(&tapio_tc_bstats, b);
	if (!s) {
		struct tapio_tc_backend_stats z = {};
		bpf_map_update_elem(&tapio_tc_bstats, b, &z, BPF_NOEXIST);
		s = bpf_map_lookup_elem(&tapio_tc_bstats, b);
		if (!s) {
			tapio_count_lost(&tapio_lost, TAPIO_LOST_MAP_FULL);
			return;
		}
	}
	if (what == 0)
		s->connections += 1;
	else if (what == 1)
		s->failures += 1;
	else
		s->successes += 1;
	if (what == 0)
		return;
	__u64 *run = bpf_map_lookup_elem(&tapio_tc_cb_run, b);
	if (!run) {
		__u64 z = 0;
		bpf_map_update_elem(&tapio_tc_cb_run, b, &z, BPF_NOEXIST);
		run = bpf_map_lookup_elem(&tapio_tc_cb_run, b);
		if (!run) {
			tapio_count_lost(&tapio_lost, TAPIO_LOST_MAP_FULL);
			return;
		}
	}
	if (what == 2) {
		__sync_lock_test_and_set(run, 0);
		return;
	}
	__u64 n = __sync_add_and_fetch(run, 1);
	__u32 gen = generation();
	struct tapio_tc_cfg *cfg = bpf_map_lookup_elem(&tapio_tc_cfgs, &gen);
	if (cfg && cfg->max_failures && n >= cfg->max_failures) {
		__u32 open = TAPIO_TC_CB_OPEN;
		bpf_map_update_elem(&tapio_tc_cb, b, &open, BPF_ANY);
	}
}

/* Rewrite the IPv4 address at `addr_off` and the L4 port at `port_off`. */
static __always_inline int rewrite(struct __sk_buff *skb, struct pkt *p, __u32 addr_off,
				   __u32 old_addr, __u32 new_addr, __u32 port_off, __u16 old_port,
				   __u16 new_port)
{
	__u32 csum_off = p->l4proto == IPPROTO_TCP ? p->l4_off + offsetof(struct tcphdr, check)
						   : p->l4_off + offsetof(struct udphdr, check);
	__u64 flags = p->l4proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
	if (old_addr != new_addr) {
		if (bpf_l4_csum_replace(skb, csum_off, old_addr, new_addr,
					flags | BPF_F_PSEUDO_HDR | 4))
			return -1;
		if (bpf_l3_csum_replace(skb, IP_CSUM_OFF, old_addr, new_addr, 4))
			return -1;
		if (bpf_skb_store_bytes(skb, addr_off, &new_addr, 4, 0))
			return -1;
	}
	if (old_port != new_port) {
		if (bpf_l4_csum_replace(skb, csum_off, old_port, new_port, flags | 2))
			return -1;
		if (bpf_skb_store_bytes(skb, port_off, &new_port, 2, 0))
			return -1;
	}
	return 0;
}

/* A translated first fragment: its later fragments get `addr` too. */
static __noinline void frag_remember(struct pkt *p, __u8 dir, __u32 addr)
{
	/* Keyed as the later fragments arrive: before translation. */
	struct frag_key k = { .saddr = p->v4_saddr, .daddr = p->v4_daddr, .id = p->ip_id,
			      .proto = p->l4proto, .dir = dir };
	struct frag_val v = { .created_ns = bpf_ktime_get_boot_ns(), .addr = addr };
	if (bpf_map_update_elem(&tapio_tc_frags, &k, &v, BPF_ANY))
		tapio_count_lost(&tapio_lost, TAPIO_LOST_MAP_FULL);
}

/* A retransmitted SYN is steered elsewhere only when its backend's
 * breaker is open: then the backend is ejected and waiting on it is
 * pointless. */
static __always_inline int ct_repick(struct ct_val *ct, __u8 proto)
{
	struct tapio_tc_addr b = { .addr = ct->backend_addr, .port = ct->backend_port,
				   .proto = proto };
	__u32 *st = bpf_map_lookup_elem(&tapio_tc_cb, &b);
	return st && *st == TAPIO_TC_CB_OPEN;
}

/* Ingress: DNAT flows to a virtual service. */
static __always_inline void lb_ingress(struct __sk_buff *skb, struct pkt *p, __u32 gen)
{
	if (p->family != 2)
		return;
	struct ct_key ck = { .client_addr = p->v4_saddr, .vip_addr = p->v4_daddr,
			     .client_port = bpf_htons(p->sport), .vip_port = bpf_htons(p->dport),
			     .proto = p->l4proto };
	struct ct_val *ct = bpf_map_lookup_elem(&tapio_tc_ct, &ck);
	int syn = p->l4proto == IPPROTO_TCP && (p->tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN;
	if (ct && syn && ct->state == CT_SYN_SENT && !ct_repick(ct, p->l4proto)) {
		/* The client's SYN again before any SYN-ACK: its retransmission
		 * timer (1 s at first) ran out, so the backend did not answer in
		 * time. That is one failure for the breaker, counted once per
		 * flow. The flow keeps its backend: the first SYN may still be
		 * answered, and a flow split over two backends breaks. */
		if (!ct->syn_retried) {
			ct->syn_retried = 1;
			struct tapio_tc_addr ob = { .addr = ct->backend_addr,
						    .port = ct->backend_port,
						    .proto = p->l4proto };
			bstat(&ob, 1);
		}
	} else if (ct && syn && ct->state != CT_ESTABLISHED) {
		/* A new connection on a tuple whose last one ended (a refused
		 * SYN, a FIN or RST seen, or a client port reused before the
		 * entry aged out), or a retransmitted SYN to a backend whose
		 * breaker opened meanwhile: a new flow, chosen and counted
		 * afresh. The old reverse entry goes, so a late answer from
		 * the old backend is not translated into this flow. */
		struct ct_key ok = { .client_addr = p->v4_saddr, .vip_addr = ct->backend_addr,
				     .client_port = bpf_htons(p->sport),
				     .vip_port = ct->backend_port, .proto = p->l4proto };
		bpf_map_delete_elem(&tapio_tc_rnat, &ok);
		bpf_map_delete_elem(&tapio_tc_ct, &ck);
		ct = NULL;
	} else if (ct && p->l4proto == IPPROTO_TCP && (p->tcp_flags & (TCP_FIN | TCP_RST))) {
		ct->state = CT_CLOSING;
	}
	if (!ct) {
		if (p->l4proto == IPPROTO_TCP && !syn)
			return; /* mid-stream, not ours */
		struct tapio_tc_addr vk = { .addr = p->v4_daddr, .port = bpf_htons(p->dport),
					    .proto = p->l4proto, .generation = gen };
		struct tapio_tc_service *svc = bpf_map_lookup_elem(&tapio_tc_services, &vk);
		if (!svc || svc->n_backends == 0 || svc->total_weight == 0)
			return;
		vk.generation = 0;
		__u64 *rr = bpf_map_lookup_elem(&tapio_tc_rr, &vk);
		if (!rr) {
			__u64 z = 0;
			bpf_map_update_elem(&tapio_tc_rr, &vk, &z, BPF_NOEXIST);
			rr = bpf_map_lookup_elem(&tapio_tc_rr, &vk);
			if (!rr)
				return;
		}
		__u64 pos = __sync_fetch_and_add(rr, 1);
		__u32 slot = pos % svc->total_weight;
		/* The backend owning this weight slot. */
		__u32 pick = 0, acc = 0;
		for (__u32 i = 0; i < TAPIO_TC_MAX_BACKENDS; i++) {
			if (i >= svc->n_backends)
				break;
			acc += svc->backends[i].weight;
			if (slot < acc) {
				pick = i;
				break;
			}
		}
		/* Skip backends whose breaker is open (keep the pick if all are). */
		__u32 chosen = pick;
		for (__u32 j = 0; j < TAPIO_TC_MAX_BACKENDS; j++) {
			if (j >= svc->n_backends)
				break;
			__u32 i = (pick + j) % svc->n_backends;
			if (i >= TAPIO_TC_MAX_BACKENDS)
				break;
			struct tapio_tc_addr bk = { .addr = svc->backends[i].addr,
						    .port = svc->backends[i].port,
						    .proto = p->l4proto };
			__u32 *st = bpf_map_lookup_elem(&tapio_tc_cb, &bk);
			if (!st || *st != TAPIO_TC_CB_OPEN) {
				chosen = i;
				break;
			}
		}
		if (chosen >= TAPIO_TC_MAX_BACKENDS)
			return;
		struct ct_val nv = { .created_ns = bpf_ktime_get_boot_ns(),
				     .backend_addr = svc->backends[chosen].addr,
				     .backend_port = svc->backends[chosen].port,
				     .state = p->l4proto == IPPROTO_TCP ? CT_SYN_SENT
									: CT_ESTABLISHED };
		if (bpf_map_update_elem(&tapio_tc_ct, &ck, &nv, BPF_ANY))
			return;
		struct ct_key rk = { .client_addr = p->v4_saddr, .vip_addr = nv.backend_addr,
				     .client_port = bpf_htons(p->sport),
				     .vip_port = nv.backend_port, .proto = p->l4proto };
		struct rnat_val rv = { .vip_addr = p->v4_daddr, .vip_port = bpf_htons(p->dport) };
		bpf_map_update_elem(&tapio_tc_rnat, &rk, &rv, BPF_ANY);
		struct tapio_tc_addr bk = { .addr = nv.backend_addr, .port = nv.backend_port,
					    .proto = p->l4proto };
		bstat(&bk, 0);
		ct = bpf_map_lookup_elem(&tapio_tc_ct, &ck);
		if (!ct)
			return;
	}
	__u32 port_off = p->l4_off + 2; /* dest port of TCP and UDP */
	__u32 backend = ct->backend_addr;
	if (rewrite(skb, p, IP_DST_OFF, p->v4_daddr, backend, port_off, bpf_htons(p->dport),
		    ct->backend_port) == 0 &&
	    p->more_frags)
		frag_remember(p, TAPIO_TC_INGRESS, backend);
}

/* Egress: replies from a backend get the virtual address back; SYN-ACK
 * and RST answering a steered SYN feed the circuit breaker. */
static __always_inline void lb_egress(struct __sk_buff *skb, struct pkt *p)
{
	if (p->family != 2)
		return;
	struct ct_key rk = { .client_addr = p->v4_daddr, .vip_addr = p->v4_saddr,
			     .client_port = bpf_htons(p->dport), .vip_port = bpf_htons(p->sport),
			     .proto = p->l4proto };
	struct rnat_val *rv = bpf_map_lookup_elem(&tapio_tc_rnat, &rk);
	if (!rv)
		return;
	__u32 vip_addr = rv->vip_addr;
	__u16 vip_port = rv->vip_port;
	if (p->l4proto == IPPROTO_TCP && (p->tcp_flags & (TCP_SYN | TCP_RST | TCP_FIN))) {
		struct ct_key ck = { .client_addr = p->v4_daddr, .vip_addr = vip_addr,
				     .client_port = bpf_htons(p->dport), .vip_port = vip_port,
				     .proto = p->l4proto };
		struct ct_val *ct = bpf_map_lookup_elem(&tapio_tc_ct, &ck);
		if (ct && ct->state == CT_SYN_SENT) {
			struct tapio_tc_addr bk = { .addr = p->v4_saddr, .port = bpf_htons(p->sport),
						    .proto = p->l4proto };
			if ((p->tcp_flags & (TCP_SYN | TCP_ACK)) == (TCP_SYN | TCP_ACK)) {
				ct->state = CT_ESTABLISHED;
				bstat(&bk, 2);
			} else if (p->tcp_flags & TCP_RST) {
				ct->state = CT_FAILED;
				bstat(&bk, 1);
			}
		} else if (ct && ct->state == CT_ESTABLISHED &&
			   (p->tcp_flags & (TCP_FIN | TCP_RST))) {
			ct->state = CT_CLOSING;
		}
	}
	__u32 port_off = p->l4_off; /* source port */
	if (rewrite(skb, p, IP_SRC_OFF, p->v4_saddr, vip_addr, port_off, bpf_htons(p->sport),
		    vip_port) == 0 &&
	    p->more_frags)
		frag_remember(p, TAPIO_TC_EGRESS, vip_addr);
}

/* A later fragment: the address its first fragment got. */
static __noinline void lb_fragment(struct __sk_buff *skb, struct pkt *p, __u8 dir, __u32 gen)
{
	struct frag_key k = { .saddr = p->v4_saddr, .daddr = p->v4_daddr, .id = p->ip_id,
			      .proto = p->l4proto, .dir = dir };
	struct frag_val *v = bpf_map_lookup_elem(&tapio_tc_frags, &k);
	__u32 c;
	if (v && bpf_ktime_get_boot_ns() - v->created_ns < FRAG_MAX_AGE_NS) {
		__u32 addr = v->addr;
		if (dir == TAPIO_TC_INGRESS) {
			if (bpf_l3_csum_replace(skb, IP_CSUM_OFF, p->v4_daddr, addr, 4))
				return;
			if (bpf_skb_store_bytes(skb, IP_DST_OFF, &addr, 4, 0))
				return;
		} else {
			if (bpf_l3_csum_replace(skb, IP_CSUM_OFF, p->v4_saddr, addr, 4))
				return;
			if (bpf_skb_store_bytes(skb, IP_SRC_OFF, &addr, 4, 0))
				return;
		}
		c = FRAG_TRANSLATED;
	} else {
		if (dir != TAPIO_TC_INGRESS)
			return;
		struct tapio_tc_addr vk = { .addr = p->v4_daddr, .generation = gen };
		if (!bpf_map_lookup_elem(&tapio_tc_vips, &vk))
			return;
		c = FRAG_UNMATCHED;
	}
	__u64 *n = bpf_map_lookup_elem(&tapio_tc_frag_counts, &c);
	if (n)
		*n += 1;
}

static __always_inline int handle(struct __sk_buff *skb, __u8 dir)
{
	struct pkt p = {};
	int r = parse(skb, &p);
	if (r == PARSE_LATER_FRAGMENT) {
		lb_fragment(skb, &p, dir, generation());
		return TC_ACT_UNSPEC;
	}
	if (r)
		return TC_ACT_UNSPEC;
	observe(skb, &p, dir);
	__u32 gen = generation();
	if (chaos(skb, &p, dir, gen))
		return TC_ACT_SHOT;
	if (dir == TAPIO_TC_INGRESS)
		lb_ingress(skb, &p, gen);
	else
		lb_egress(skb, &p);
	return TC_ACT_UNSPEC;
}

SEC("classifier")
int tapio_tc_ingress(struct __sk_buff *skb)
{
	return handle(skb, TAPIO_TC_INGRESS);
}

SEC("classifier")
int tapio_tc_egress(struct __sk_buff *skb)
{
	return handle(skb, TAPIO_TC_EGRESS);
}
