// SPDX-License-Identifier: GPL-2.0-only
/*
 * DNS packets of this host's clients, UDP and TCP, IPv4 and IPv6:
 *   queries   at net_dev_queue (egress, in the sender's context) when the
 *             destination port is a configured DNS port;
 *   responses at netif_receive_skb (softirq, every received packet) when
 *             the source port is one; the response inherits the query's
 *             process. (skb_copy_datagram_iovec would run in the receiver's
 *             context, but UDP copies linear datagrams without it.)
 * A bounded copy of the payload goes to userspace, which parses the DNS
 * message and matches responses to queries (tuple + transaction id).
 * Servers on this host are not traced (their packets have the DNS port on
 * the other side).
 *
 * Encrypted DNS (DoT, DoH) cannot be read, but a process using it can be
 * seen: a TLS ClientHello leaving for a DoT port, or naming a configured
 * DoH resolver, becomes a tapio_dns_encrypted record with the socket's
 * owner (learnt at connect, as for DNS over TCP).
 *
 * probes.scope, by who sent the query, before any reserve:
 *   a query       current when it is the sender; sent later from softirq
 *                 (a kernel thread, or another process interrupted),
 *                 the socket owner learnt at send time (only in-scope
 *                 owners are learnt);
 *   a response    (softirq, current is anyone: on loopback the server)
 *                 only for a flow an in-scope query left on
 *                 (tapio_dns_scope_flows, filled only when scoped);
 *   DNS over TCP and encrypted DNS (cgroup_skb): only for sockets whose
 *                 owner was learnt at connect, which is in scope.
 */
#include "tapio_bpf.h"
#include "tapio_tls.h"
#include "tapio_scope.h"

TAPIO_PROBE_MAPS();

typedef struct tapio_dns_packet tapio_dns_packet;
TAPIO_ABI_BTF(tapio_dns_packet);
typedef struct tapio_dns_encrypted tapio_dns_encrypted;
TAPIO_ABI_BTF(tapio_dns_encrypted);

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define IPPROTO_UDP_ 17
#define IPPROTO_TCP_ 6

/*
 * Per-port values (host order), filled by userspace from config: word
 * port / 16 holds port's 4-bit value at bit (port % 16) * 4. An array
 * over every port, not a hash of the few configured: the per-packet hooks
 * look a port up for every packet on the host, and an array lookup is a
 * bounds check and an add the JIT inlines where a hash lookup is a call,
 * a jhash and a bucket walk. Nibbles in 8-byte words, not a byte per
 * port: an array's elements take 8 bytes each, so 65,536 one-byte values
 * would hold 512 KiB of kernel memory per map, where this holds 32 KiB.
 */
#define PORT_WORDS (65536 / 16)

static __always_inline __u8 port_value(void *map, __u16 port)
{
	__u32 k = port / 16;
	__u64 *v = bpf_map_lookup_elem(map, &k);
	return v ? (*v >> ((port % 16) * 4)) & 0xf : 0;
}

/* DNS server ports: value 1. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PORT_WORDS);
	__type(key, __u32);
	__type(value, __u64);
} tapio_dns_ports SEC(".maps");

/* Encrypted DNS server ports: value bits ENC_DOT (a DoT port: any
 * ClientHello counts) and ENC_DOH (a port DoH resolvers listen on: a
 * ClientHello counts when it names one). */
#define ENC_DOT 1
#define ENC_DOH 2

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PORT_WORDS);
	__type(key, __u32);
	__type(value, __u64);
} tapio_dns_enc_ports SEC(".maps");

/* Flows (client -> server tuple, _pad0 = IP protocol) that an in-scope
 * query left on, so their responses are recorded. Used only when a scope
 * is set; userspace shrinks it to one entry otherwise. LRU: a flow whose
 * response never comes is evicted. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct tapio_tcp_tuple);
	__type(value, __u8);
} tapio_dns_scope_flows SEC(".maps");

/* Hashes (tapio_tls_name_hash) of the configured DoH resolver names. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TAPIO_DOH_MAX_NAMES);
	__type(key, __u64);
	__type(value, __u8);
} tapio_dns_doh_names SEC(".maps");

/* Per-CPU scratch for a server name being hashed. */
struct name_scratch {
	__u8 b[TAPIO_TLS_NAME_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct name_scratch);
} tapio_dns_scratch SEC(".maps");

static __always_inline __u8 enc_port(__u16 port)
{
	return port_value(&tapio_dns_enc_ports, port);
}

/* Who owns a socket, learnt in process context (sock_send_length), for
 * packets that leave later from softirq: a first packet to a new neighbour
 * waits for ARP/NDP and is sent by whoever processes the answer. */
struct sock_owner {
	struct tapio_event_header hdr;
	__u64 ino; /* socket inode: tells a reused struct sock address apart */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct sock_owner);
} tapio_dns_sock_owner SEC(".maps");

/* Inode number of the socket a sock belongs to (0 if none). */
static __always_inline __u64 sock_ino(const struct sock *sk, const int btf)
{
	struct socket *so = TAPIO_RD(btf, sk, sk_socket);
	if (!so)
		return 0;
	/* container_of leaves the typed pointer: a probe read either way. */
	struct socket_alloc *sa = container_of(so, struct socket_alloc, socket);
	return BPF_CORE_READ(sa, vfs_inode.i_ino);
}

#define PF_KTHREAD 0x00200000

/* [0]: 1 when the cgroup_skb programs below carry TCP, so the tracepoint
 * paths (which cannot read TCP payload in page fragments) leave TCP alone.
 * Set by userspace after it attached them. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} tapio_dns_cfg SEC(".maps");

/* TCP DNS sockets' owners by socket cookie (never reused), learnt at
 * connect() in process context. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct tapio_event_header);
} tapio_dns_tcp_owner SEC(".maps");

static __always_inline int tcp_via_cgroup(void)
{
	__u32 k = 0;
	__u32 *v = bpf_map_lookup_elem(&tapio_dns_cfg, &k);
	return v && *v;
}

struct parsed {
	__u32 payload_off;  /* offset of the DNS payload from skb->head */
	__u32 payload_len;  /* payload bytes on the wire */
	__u16 sport, dport;
	__u8 protocol;
	__u8 v6;
	__u8 saddr[16];
	__u8 daddr[16];
};

/*
 * The first PEEK bytes from a packet's network header, read with one probe
 * read: the fixed IPv4 header and a TCP header (40 bytes) or IPv6's and a
 * TCP header (60), so the port check and the parse of nearly every packet
 * read no header twice. A probe read is a call whose fixed cost dwarfs its
 * bytes: these hooks made two per packet and five per DNS response before.
 * Bytes past a short packet's end are whatever its buffer holds there (the
 * read stays inside the skb's head allocation, which skb_shared_info
 * ends): every length is still checked against the headers' own.
 */
#define PEEK 64

struct peek {
	unsigned char *head;
	__u32 nh, th; /* network and transport header offsets from head */
	__u8 b[PEEK];
};

/* On egress the stack has set the header offsets; on receive (`from_data`)
 * skb->data is the IP header and the transport offset is computed here,
 * since drivers leave it unset. */
static __always_inline int peek(const struct sk_buff *skb, struct peek *pk, int from_data,
				const int btf)
{
	pk->head = TAPIO_RD(btf, skb, head);
	if (!pk->head)
		return -1;
	if (from_data) {
		pk->nh = TAPIO_RD(btf, skb, data) - pk->head;
	} else {
		pk->nh = TAPIO_RD(btf, skb, network_header);
		pk->th = TAPIO_RD(btf, skb, transport_header);
		if (pk->nh == 0xffff || pk->th == 0xffff)
			return -1;
	}
	if (pk->nh > 0xffff)
		return -1;
	if (bpf_probe_read_kernel(pk->b, PEEK, pk->head + pk->nh))
		return -1;
	__u8 vihl = pk->b[0];
	if (from_data)
		pk->th = pk->nh + ((vihl >> 4) == 6 ? 40 : (vihl & 0xf) * 4);
	return 0;
}

/* `len` bytes at `off` from the network header: from the peek when they
 * lie in it at one of the fixed headers' ends (0, 20, 40: constant offsets
 * into the stack buffer), else read from the packet. */
static __always_inline int hdr_read(void *dst, const __u32 len, const struct peek *pk, __u32 off)
{
	if (off == 0 && len <= PEEK) {
		__builtin_memcpy(dst, pk->b, len);
		return 0;
	}
	if (off == 20 && 20 + len <= PEEK) {
		__builtin_memcpy(dst, pk->b + 20, len);
		return 0;
	}
	if (off == 40 && 40 + len <= PEEK) {
		__builtin_memcpy(dst, pk->b + 40, len);
		return 0;
	}
	return bpf_probe_read_kernel(dst, len, pk->head + pk->nh + off);
}

/* Parse IP and UDP/TCP headers. */
static __always_inline int parse(const struct peek *pk, struct parsed *p)
{
	__u32 nh = pk->nh, th = pk->th;
	__u8 vihl = pk->b[0];
	__u32 ip_payload; /* bytes after the fixed IP header */
	__u32 ip_hdr_len; /* the fixed IP header: IHL for v4, 40 for v6 */
	if ((vihl >> 4) == 4) {
		struct iphdr ip;
		if (hdr_read(&ip, sizeof(ip), pk, 0))
			return -1;
		p->protocol = ip.protocol;
		p->v6 = 0;
		__builtin_memset(p->saddr, 0, 16);
		__builtin_memset(p->daddr, 0, 16);
		p->saddr[10] = p->saddr[11] = 0xff;
		p->daddr[10] = p->daddr[11] = 0xff;
		__builtin_memcpy(&p->saddr[12], &ip.saddr, 4);
		__builtin_memcpy(&p->daddr[12], &ip.daddr, 4);
		__u32 ihl = (vihl & 0xf) * 4;
		__u32 tot = bpf_ntohs(ip.tot_len);
		if (tot < ihl)
			return -1;
		ip_payload = tot - ihl;
		ip_hdr_len = ihl;
		/* Fragments: only the first carries ports, and a DNS message is
		 * rarely fragmented; userspace counts what does not parse. */
		if (bpf_ntohs(ip.frag_off) & 0x1fff)
			return -1;
	} else if ((vihl >> 4) == 6) {
		struct ipv6hdr ip6;
		if (hdr_read(&ip6, sizeof(ip6), pk, 0))
			return -1;
		/* Extension headers are not walked: DNS over IPv6 does not use them. */
		p->protocol = ip6.nexthdr;
		p->v6 = 1;
		__builtin_memcpy(p->saddr, &ip6.saddr, 16);
		__builtin_memcpy(p->daddr, &ip6.daddr, 16);
		ip_payload = bpf_ntohs(ip6.payload_len);
		ip_hdr_len = 40;
	} else {
		return -1;
	}
	if (th < nh + ip_hdr_len)
		return -1;
	if (p->protocol == IPPROTO_UDP_) {
		struct udphdr uh;
		if (hdr_read(&uh, sizeof(uh), pk, th - nh))
			return -1;
		p->sport = bpf_ntohs(uh.source);
		p->dport = bpf_ntohs(uh.dest);
		__u32 ulen = bpf_ntohs(uh.len);
		if (ulen < 8)
			return -1;
		p->payload_off = th + 8;
		p->payload_len = ulen - 8;
	} else if (p->protocol == IPPROTO_TCP_) {
		struct tcphdr tcp;
		if (hdr_read(&tcp, sizeof(tcp), pk, th - nh))
			return -1;
		p->sport = bpf_ntohs(tcp.source);
		p->dport = bpf_ntohs(tcp.dest);
		__u32 doff = tcp.doff * 4;
		/* Extension headers between the fixed IP header and TCP. */
		__u32 ext = th - nh - ip_hdr_len;
		if (ip_payload < ext + doff)
			return -1;
		p->payload_off = th + doff;
		p->payload_len = ip_payload - ext - doff;
	} else {
		return -1;
	}
	return 0;
}

/* Orient the record's tuple client -> server whichever way it went. */
static __always_inline void fill_tuple(struct tapio_tcp_tuple *t, const struct parsed *p,
				       __u8 direction)
{
	int q = direction == TAPIO_DNS_QUERY;
	t->family = p->v6 ? 10 : 2;
	__builtin_memcpy(t->saddr, q ? p->saddr : p->daddr, 16);
	__builtin_memcpy(t->daddr, q ? p->daddr : p->saddr, 16);
	t->sport = q ? p->sport : p->dport;
	t->dport = q ? p->dport : p->sport;
}

static __always_inline int is_dns_port(__u16 port)
{
	return port_value(&tapio_dns_ports, port) != 0;
}

/* probes.scope for a packet of the tracepoint paths: a query by its
 * sender (noting its flow), a response by its query's flow. `owner`: the
 * learnt socket owner of a query sent later from softirq, or NULL. */
static __always_inline int packet_in_scope(struct parsed *p, __u8 direction, int deferred,
					   const struct sock_owner *owner)
{
	if (!tapio_scoped())
		return 1;
	struct tapio_tcp_tuple k = {};
	fill_tuple(&k, p, direction);
	k._pad0 = p->protocol;
	if (direction == TAPIO_DNS_RESPONSE)
		return bpf_map_lookup_elem(&tapio_dns_scope_flows, &k) != NULL;
	/* Only in-scope owners are learnt (on_send). */
	if (deferred ? !owner : !tapio_current_in_scope())
		return 0;
	__u8 one = 1;
	if (bpf_map_update_elem(&tapio_dns_scope_flows, &k, &one, BPF_ANY))
		tapio_count_lost(&tapio_lost, TAPIO_LOST_MAP_FULL);
	return 1;
}

/* A packet record cut after `cap` payload bytes (TAPIO_DNS_PAYLOAD_SMALL
 * or TAPIO_DNS_PAYLOAD), and the copy's length in [1, cap]. `cap` is a
 * constant at every call (inlined), so the ring reserve's size and the
 * copy's bound are constants the verifier sees. */
#define PACKET_SIZE(cap) (offsetof(struct tapio_dns_packet, payload) + (cap))
#define COPY_LEN(want, cap)                                                    \
	((cap) == TAPIO_DNS_PAYLOAD_SMALL ? TAPIO_LEN_1_TO(want, TAPIO_DNS_PAYLOAD_SMALL) \
					  : TAPIO_LEN_1_TO(want, TAPIO_DNS_PAYLOAD))

/* The record for one packet, `cap` payload bytes long (a constant: the
 * ring reserve and the copy's bound must be known to the verifier). */
static __always_inline void emit_sized(const struct sk_buff *skb, struct parsed *p, __u8 direction,
				       int deferred, struct sock_owner *o, const __u32 cap,
				       const int btf)
{
	struct tapio_dns_packet *e = tapio_reserve(&tapio_events, &tapio_lost, PACKET_SIZE(cap));
	if (!e)
		return;
	/* Zero the fixed part (the payload is bounded by payload_len). */
	__builtin_memset(e, 0, offsetof(struct tapio_dns_packet, payload));
	if (deferred) {
		/* The socket's owner as learnt at send time, or unknown; never
		 * the kernel thread or the task the softirq interrupted. */
		if (o)
			e->hdr = o->hdr;
		e->hdr.ts_ns = bpf_ktime_get_boot_ns();
		e->hdr.kind = TAPIO_EVENT_DNS_PACKET;
	} else {
		tapio_fill_header_current(&e->hdr, TAPIO_EVENT_DNS_PACKET);
	}
	e->direction = direction;
	e->protocol = p->protocol;
	e->wire_len = p->payload_len > 0xffff ? 0xffff : p->payload_len;
	fill_tuple(&e->tuple, p, direction);

	/* Only the linear part of the skb can be read here; beyond it the
	 * payload sits in page fragments. */
	unsigned char *head = TAPIO_RD(btf, skb, head);
	unsigned char *data = TAPIO_RD(btf, skb, data);
	__u32 linear_end =
		(__u32)(data - head) + TAPIO_RD(btf, skb, len) - TAPIO_RD(btf, skb, data_len);
	__u32 want = p->payload_len;
	if (want > cap) {
		want = cap;
		e->flags |= TAPIO_DNS_TRUNCATED;
	}
	if (p->payload_off + want > linear_end) {
		e->flags |= TAPIO_DNS_NOT_CAPTURED;
		tapio_submit(&tapio_events, e);
		return;
	}
	__u64 n = COPY_LEN(want, cap);
	if (bpf_probe_read_kernel(e->payload, n, head + p->payload_off)) {
		tapio_count_lost(&tapio_lost, TAPIO_LOST_READ_ERROR);
		bpf_ringbuf_discard(e, 0);
		return;
	}
	e->payload_len = want;
	tapio_submit(&tapio_events, e);
}

static __always_inline void emit(const struct sk_buff *skb, struct parsed *p, __u8 direction,
				 const int btf)
{
	if (p->payload_len == 0)
		return; /* handshakes and bare ACKs */
	struct task_struct *task = bpf_get_current_task_btf();
	/* A query sent later from softirq (a first packet to a new neighbour
	 * waits for ARP/NDP and leaves with the answer) runs in a kernel
	 * thread, or on the tail of an interrupt in whatever task was on the
	 * CPU: a busy unrelated process then looks like the sender. The
	 * socket's owner, learnt when its send returned, is the sender then;
	 * current only when it is that process, or nothing was learnt (a
	 * socket's first packet sent at once, before its send returns). */
	int deferred = 0;
	struct sock_owner *o = NULL;
	if (direction == TAPIO_DNS_QUERY) {
		const struct sock *s = TAPIO_RD(btf, skb, sk);
		__u64 key = (__u64)s;
		o = s ? bpf_map_lookup_elem(&tapio_dns_sock_owner, &key) : NULL;
		if (o && o->ino != sock_ino(s, btf))
			o = NULL;
		if (task->flags & PF_KTHREAD)
			deferred = 1;
		else if (o && o->hdr.pid != (__u32)(bpf_get_current_pid_tgid() >> 32))
			deferred = 1;
	}
	if (!packet_in_scope(p, direction, deferred, o))
		return;
	if (p->payload_len <= TAPIO_DNS_PAYLOAD_SMALL)
		emit_sized(skb, p, direction, deferred, o, TAPIO_DNS_PAYLOAD_SMALL, btf);
	else
		emit_sized(skb, p, direction, deferred, o, TAPIO_DNS_PAYLOAD, btf);
}

/*
 * These hooks run for every packet on the host, so first look only at the
 * one port that matters, from the peek's bytes (one probe read), and leave
 * all other traffic there; the full parse runs for DNS ports only. A
 * non-UDP/TCP packet whose bytes happen to match is refused by it.
 */
static __always_inline int port_is_dns(const struct peek *pk, int src)
{
	__be16 ports[2];
	if (pk->th < pk->nh || hdr_read(ports, sizeof(ports), pk, pk->th - pk->nh))
		return 0;
	return is_dns_port(bpf_ntohs(ports[src ? 0 : 1]));
}

/*
 * Egress packets of local TCP sockets are decided from the socket, with a
 * few loads instead of the peek's probe read: nearly every packet a busy
 * host sends. Its peer's port is the packet's destination, so one not to a
 * DNS port is no query; with the cgroup_skb programs loaded none is ours.
 * A request or timewait socket (SYN-ACK, RST, last ACK) is TCP by its
 * state; its sk_protocol is not there to read. Not for UDP: a connected
 * UDP socket may still sendto() another address. Unconnected sockets and
 * forwarded packets (no socket) are peeked. Typed loads: tp_btf only.
 */
static __always_inline int tcp_egress_not_dns(const struct sk_buff *skb, const int btf)
{
	if (!btf)
		return 0;
	const struct sock *sk = TAPIO_RD(btf, skb, sk);
	if (!sk)
		return 0;
	__u8 state = TAPIO_RD(btf, sk, __sk_common.skc_state);
	if (state != TCP_TIME_WAIT && state != TCP_NEW_SYN_RECV &&
	    TAPIO_RD(btf, sk, sk_protocol) != IPPROTO_TCP_)
		return 0;
	if (tcp_via_cgroup())
		return 1;
	__u16 dport = bpf_ntohs(TAPIO_RD(btf, sk, __sk_common.skc_dport));
	return dport && !is_dns_port(dport);
}

static __always_inline int on_egress(const struct sk_buff *skb, const int btf)
{
	struct peek pk;
	struct parsed p = {};
	if (tcp_egress_not_dns(skb, btf))
		return 0;
	if (peek(skb, &pk, 0, btf) || !port_is_dns(&pk, 0))
		return 0;
	if (parse(&pk, &p) || !is_dns_port(p.dport))
		return 0;
	if (p.protocol == IPPROTO_TCP_ && tcp_via_cgroup())
		return 0;
	emit(skb, &p, TAPIO_DNS_QUERY, btf);
	return 0;
}

static __always_inline int on_receive(const struct sk_buff *skb, const int btf)
{
	struct peek pk;
	struct parsed p = {};
	if (peek(skb, &pk, 1, btf) || !port_is_dns(&pk, 1))
		return 0;
	if (parse(&pk, &p) || !is_dns_port(p.sport))
		return 0;
	if (p.protocol == IPPROTO_TCP_ && tcp_via_cgroup())
		return 0;
	emit(skb, &p, TAPIO_DNS_RESPONSE, btf);
	return 0;
}

static __always_inline int on_send(const struct sock *sk, const int btf)
{
	__u16 proto = TAPIO_RD(btf, sk, sk_protocol);
	if (proto != IPPROTO_UDP_ && proto != IPPROTO_TCP_)
		return 0;
	/* A connected socket (every TCP one) names its peer's port: one not
	 * talking to a DNS port sends no query, so it is not learnt (this
	 * runs for every send on the host; learning every new connection
	 * churned the LRU map). An unconnected UDP socket (sendto) has no
	 * port yet and is learnt. */
	__u16 dport = bpf_ntohs(TAPIO_RD(btf, sk, __sk_common.skc_dport));
	if (dport && !is_dns_port(dport))
		return 0;
	if (!tapio_current_in_scope())
		return 0;
	__u64 key = (__u64)sk;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u64 ino = sock_ino(sk, btf);
	struct sock_owner *cur = bpf_map_lookup_elem(&tapio_dns_sock_owner, &key);
	/* Only write when the owner changes: this runs for every send. */
	if (cur && cur->hdr.pid == tgid && cur->ino == ino)
		return 0;
	struct sock_owner o = {};
	tapio_fill_header_current(&o.hdr, TAPIO_EVENT_DNS_PACKET);
	o.ino = ino;
	bpf_map_update_elem(&tapio_dns_sock_owner, &key, &o, BPF_ANY);
	return 0;
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(tapio_dns_send_btf, struct sock *sk, int ret, int flags)
{
	return on_send(sk, 1);
}

SEC("tracepoint/sock/sock_send_length")
int tapio_dns_send_tp(struct trace_event_raw_sock_msg_length *ctx)
{
	return on_send((const struct sock *)BPF_CORE_READ(ctx, sk), 0);
}

SEC("tp_btf/net_dev_queue")
int BPF_PROG(tapio_dns_egress_btf, struct sk_buff *skb)
{
	return on_egress(skb, 1);
}

SEC("tp_btf/netif_receive_skb")
int BPF_PROG(tapio_dns_receive_btf, struct sk_buff *skb)
{
	return on_receive(skb, 1);
}

SEC("tracepoint/net/net_dev_queue")
int tapio_dns_egress_tp(struct trace_event_raw_net_dev_template *ctx)
{
	return on_egress((const struct sk_buff *)BPF_CORE_READ(ctx, skbaddr), 0);
}

SEC("tracepoint/net/netif_receive_skb")
int tapio_dns_receive_tp(struct trace_event_raw_net_dev_template *ctx)
{
	return on_receive((const struct sk_buff *)BPF_CORE_READ(ctx, skbaddr), 0);
}

/*
 * DNS over TCP. The stack keeps TCP payload in page fragments, which
 * tracing programs cannot read; cgroup_skb programs (attached to the cgroup
 * v2 root, so every local socket) read it with bpf_skb_load_bytes.
 */

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(tapio_dns_tcp_connect_btf, const struct sock *sk, const int oldstate, const int newstate)
{
	if (newstate != TCP_SYN_SENT || sk->sk_protocol != IPPROTO_TCP_)
		return 0;
	__u16 dport = bpf_ntohs(sk->__sk_common.skc_dport);
	if (!is_dns_port(dport) && !enc_port(dport))
		return 0;
	if (!tapio_current_in_scope())
		return 0;
	__u64 cookie = bpf_get_socket_cookie((void *)sk);
	struct tapio_event_header h = {};
	tapio_fill_header_current(&h, TAPIO_EVENT_DNS_PACKET);
	if (bpf_map_update_elem(&tapio_dns_tcp_owner, &cookie, &h, BPF_ANY))
		tapio_count_lost(&tapio_lost, TAPIO_LOST_MAP_FULL);
	return 0;
}

/* Parse from skb offset 0 (the IP header in cgroup_skb). 0 on success. */
static __always_inline int parse_cg(struct __sk_buff *skb, struct parsed *p)
{
	__u8 vihl;
	__u32 th, ip_payload, ip_hdr_len;
	if (bpf_skb_load_bytes(skb, 0, &vihl, 1))
		return -1;
	if ((vihl >> 4) == 4) {
		struct iphdr ip;
		if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)))
			return -1;
		p->protocol = ip.protocol;
		p->v6 = 0;
		p->saddr[10] = p->saddr[11] = 0xff;
		p->daddr[10] = p->daddr[11] = 0xff;
		__builtin_memcpy(&p->saddr[12], &ip.saddr, 4);
		__builtin_memcpy(&p->daddr[12], &ip.daddr, 4);
		ip_hdr_len = (vihl & 0xf) * 4;
		__u32 tot = bpf_ntohs(ip.tot_len);
		if (tot < ip_hdr_len || (bpf_ntohs(ip.frag_off) & 0x1fff))
			return -1;
		ip_payload = tot - ip_hdr_len;
	} else if ((vihl >> 4) == 6) {
		struct ipv6hdr ip6;
		if (bpf_skb_load_bytes(skb, 0, &ip6, sizeof(ip6)))
			return -1;
		p->protocol = ip6.nexthdr;
		p->v6 = 1;
		__builtin_memcpy(p->saddr, &ip6.saddr, 16);
		__builtin_memcpy(p->daddr, &ip6.daddr, 16);
		ip_hdr_len = 40;
		ip_payload = bpf_ntohs(ip6.payload_len);
	} else {
		return -1;
	}
	if (p->protocol != IPPROTO_TCP_)
		return -1;
	th = ip_hdr_len;
	struct tcphdr tcp;
	if (bpf_skb_load_bytes(skb, th, &tcp, sizeof(tcp)))
		return -1;
	p->sport = bpf_ntohs(tcp.source);
	p->dport = bpf_ntohs(tcp.dest);
	__u32 doff = tcp.doff * 4;
	if (ip_payload < doff)
		return -1;
	p->payload_off = th + doff;
	p->payload_len = ip_payload - doff;
	return 0;
}

static __always_inline void emit_cg_sized(struct __sk_buff *skb, struct parsed *p, __u8 direction,
					  struct tapio_event_header *owner, const __u32 cap)
{
	struct tapio_dns_packet *e = tapio_reserve(&tapio_events, &tapio_lost, PACKET_SIZE(cap));
	if (!e)
		return;
	__builtin_memset(e, 0, offsetof(struct tapio_dns_packet, payload));
	if (owner)
		e->hdr = *owner;
	e->hdr.ts_ns = bpf_ktime_get_boot_ns();
	e->hdr.kind = TAPIO_EVENT_DNS_PACKET;
	e->direction = direction;
	e->protocol = IPPROTO_TCP_;
	e->wire_len = p->payload_len > 0xffff ? 0xffff : p->payload_len;
	fill_tuple(&e->tuple, p, direction);
	__u32 want = p->payload_len;
	if (want > cap) {
		want = cap;
		e->flags |= TAPIO_DNS_TRUNCATED;
	}
	__u64 n = COPY_LEN(want, cap);
	if (bpf_skb_load_bytes(skb, p->payload_off, e->payload, n)) {
		tapio_count_lost(&tapio_lost, TAPIO_LOST_READ_ERROR);
		bpf_ringbuf_discard(e, 0);
		return;
	}
	e->payload_len = n;
	tapio_submit(&tapio_events, e);
}

static __always_inline void emit_cg(struct __sk_buff *skb, struct parsed *p, __u8 direction)
{
	if (p->payload_len == 0)
		return;
	__u64 cookie = bpf_get_socket_cookie(skb);
	struct tapio_event_header *owner = bpf_map_lookup_elem(&tapio_dns_tcp_owner, &cookie);
	/* Scoped: only owners learnt at connect are in scope. */
	if (!owner && tapio_scoped())
		return;
	if (p->payload_len <= TAPIO_DNS_PAYLOAD_SMALL)
		emit_cg_sized(skb, p, direction, owner, TAPIO_DNS_PAYLOAD_SMALL);
	else
		emit_cg_sized(skb, p, direction, owner, TAPIO_DNS_PAYLOAD);
}

/* Does the ClientHello at `off` name a configured DoH resolver? Global,
 * so the verifier checks it once. */
__noinline int tapio_dns_doh_sni(struct __sk_buff *skb, __u32 off, __u32 end)
{
	__u32 zero = 0;
	struct name_scratch *buf = bpf_map_lookup_elem(&tapio_dns_scratch, &zero);
	if (!buf)
		return 0;
	__u64 h = tapio_tls_sni_hash(skb, off, end, buf->b);
	return h && bpf_map_lookup_elem(&tapio_dns_doh_names, &h) != NULL;
}

/* A ClientHello to an encrypted DNS server: one record, with the owner. */
static __always_inline void encrypted(struct __sk_buff *skb, struct parsed *p, __u8 ports)
{
	__u8 b[6];
	if (p->payload_len < 6 || bpf_skb_load_bytes(skb, p->payload_off, b, 6) ||
	    !tapio_tls_client_hello(b, 6))
		return;
	__u8 how = 0;
	if (ports & ENC_DOT)
		how = TAPIO_DNS_DOT;
	else if (tapio_dns_doh_sni(skb, p->payload_off, p->payload_off + p->payload_len))
		how = TAPIO_DNS_DOH;
	__u64 cookie = bpf_get_socket_cookie(skb);
	struct tapio_event_header *owner = bpf_map_lookup_elem(&tapio_dns_tcp_owner, &cookie);
	struct tapio_event_header h = {};
	if (owner) {
		h = *owner;
		/* Learnt at connect for this ClientHello only: free the slot for
		 * DNS-over-TCP sockets (every HTTPS connect fills one). */
		bpf_map_delete_elem(&tapio_dns_tcp_owner, &cookie);
	}
	if (!how || (!owner && tapio_scoped()))
		return;
	struct tapio_dns_encrypted *e = tapio_reserve(&tapio_events, &tapio_lost, sizeof(*e));
	if (!e)
		return;
	__builtin_memset(e, 0, sizeof(*e));
	e->hdr = h;
	e->hdr.ts_ns = bpf_ktime_get_boot_ns();
	e->hdr.kind = TAPIO_EVENT_DNS_ENCRYPTED;
	e->encryption = how;
	fill_tuple(&e->tuple, p, TAPIO_DNS_QUERY);
	tapio_submit(&tapio_events, e);
}

/*
 * Whether a packet may be one of ours, read from the linear data with
 * direct packet access (loads, no helper call): a non-TCP one is not, nor
 * a TCP one whose server-side port (`egress`: the destination, a DNS or an
 * encrypted-DNS port; else the source, a DNS port) is not configured.
 * These programs see every packet of every local socket; the full parse
 * (three bpf_skb_load_bytes calls) runs only for the rest, and for a
 * packet whose headers are not all in the linear data (returns 1: let the
 * full parse decide).
 */
static __always_inline int cg_may_be_dns(struct __sk_buff *skb, int egress)
{
	__u8 *b = (__u8 *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	if ((void *)(b + 10) > end)
		return 1;
	__u32 th;
	__u8 proto;
	if ((b[0] >> 4) == 4) {
		proto = b[9];
		th = (b[0] & 0xf) * 4;
	} else if ((b[0] >> 4) == 6) {
		proto = b[6];
		th = 40;
	} else {
		return 1;
	}
	if (proto != IPPROTO_TCP_)
		return 0;
	__u8 *ports = b + th;
	if ((void *)(ports + 4) > end)
		return 1;
	if (egress) {
		__u16 dport = ((__u16)ports[2] << 8) | ports[3];
		return is_dns_port(dport) || enc_port(dport);
	}
	return is_dns_port(((__u16)ports[0] << 8) | ports[1]);
}

SEC("cgroup_skb/egress")
int tapio_dns_tcp_egress(struct __sk_buff *skb)
{
	struct parsed p = {};
	if (!cg_may_be_dns(skb, 1) || parse_cg(skb, &p))
		return 1;
	if (is_dns_port(p.dport)) {
		emit_cg(skb, &p, TAPIO_DNS_QUERY);
	} else if (p.payload_len >= 6) {
		/* Bare ACKs (most segments of a download) skip the lookup. */
		__u8 ports = enc_port(p.dport);
		if (ports)
			encrypted(skb, &p, ports);
	}
	return 1; /* observe only: always let the packet through */
}

SEC("cgroup_skb/ingress")
int tapio_dns_tcp_ingress(struct __sk_buff *skb)
{
	struct parsed p = {};
	if (cg_may_be_dns(skb, 0) && !parse_cg(skb, &p) && is_dns_port(p.sport))
		emit_cg(skb, &p, TAPIO_DNS_RESPONSE);
	return 1;
}
