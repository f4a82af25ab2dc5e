/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * Tapio's kernel <-> userspace ABI: every struct and enum a BPF program
 * writes into a ring buffer or map that userspace reads.
 *
 * This header is the single source of truth. The Rust view (crate
 * `tapio-shared`) is generated from it by bindgen at build time; never mirror
 * a struct by hand.
 *
 * Rules (checked: the pragma below makes any implicit hole a build error in
 * the BPF compile and in bindgen):
 *  - fixed-width fields only, ordered large to small, explicit padding;
 *  - no bool, long, pointers or packed structs;
 *  - every timestamp is CLOCK_BOOTTIME nanoseconds (bpf_ktime_get_boot_ns),
 *    so suspend does not skew durations; userspace converts to wall clock.
 */
#ifndef TAPIO_EVENTS_H
#define TAPIO_EVENTS_H

#if defined(__VMLINUX_H__) || defined(__ASM_GENERIC_INT_LL64_H)
/* The fixed-width types are already there (vmlinux.h or linux/types.h). */
#else
/* Self-contained for bindgen (-target bpf has no multiarch include dir). */
typedef __UINT8_TYPE__ __u8;
typedef __UINT16_TYPE__ __u16;
typedef __UINT32_TYPE__ __u32;
typedef __INT32_TYPE__ __s32;
typedef __UINT64_TYPE__ __u64;
#endif

#pragma clang diagnostic push
#pragma clang diagnostic error "-Wpadded"

/* Kernel task comm length (TASK_COMM_LEN). */
#define TAPIO_COMM_LEN 16
/* Executable path captured at exec. Longer paths are cut and flagged. */
#define TAPIO_PATH_LEN 256
/* Command line captured at exec: NUL-separated argv, bounded so one exec
 * costs one fixed-size ring-buffer slot. Longer command lines are flagged. */
#define TAPIO_ARGS_LEN 1024
/* One cgroup directory name (kernfs node name). Container runtimes put
 * the container id in the leaf (64 hex + decoration) and the pod uid in the
 * parent, so two names are enough to derive container.id and k8s.pod.uid. */
#define TAPIO_CGROUP_NAME_LEN 128

/* What a ring-buffer record is; the first field of every record. */
enum tapio_event_kind {
	TAPIO_EVENT_PROCESS_EXEC = 1,
	TAPIO_EVENT_PROCESS_EXIT = 2,
	TAPIO_EVENT_PROCESS_FORK = 3,
	TAPIO_EVENT_TCP_CONNECT = 10,
	TAPIO_EVENT_TCP_CLOSE = 11,
	TAPIO_EVENT_DNS_PACKET = 20,
	TAPIO_EVENT_TC_FLOW = 30,
};

/* DNS payload bytes copied per packet: the classic UDP message limit.
 * Header and question always fit; long answer sections are cut (flagged). */
#define TAPIO_DNS_PAYLOAD 512

/* Bits of tapio_dns_packet.flags. */
enum tapio_dns_flags {
	/* The payload was longer than TAPIO_DNS_PAYLOAD; the rest is cut. */
	TAPIO_DNS_TRUNCATED = 1,
	/* The payload was not in the packet's linear data and could not be
	 * copied (payload_len is 0). */
	TAPIO_DNS_NOT_CAPTURED = 2,
};

/* Which way a DNS packet went, seen from this host's client. */
enum tapio_dns_direction {
	TAPIO_DNS_QUERY = 0,    /* sent to a DNS server port */
	TAPIO_DNS_RESPONSE = 1, /* received from a DNS server port */
};

/* How an outbound TCP connection attempt ended. */
enum tapio_tcp_outcome {
	TAPIO_TCP_OK = 0,          /* SYN_SENT -> ESTABLISHED */
	TAPIO_TCP_REFUSED = 1,     /* RST answered the SYN (ECONNREFUSED) */
	TAPIO_TCP_TIMEOUT = 2,     /* SYN retries ran out (ETIMEDOUT) */
	TAPIO_TCP_UNREACHABLE = 3, /* ICMP unreachable (EHOSTUNREACH, ENETUNREACH) */
	TAPIO_TCP_ERROR = 4,       /* any other socket error */
	TAPIO_TCP_CANCELLED = 5,   /* closed by its owner before an answer */
	TAPIO_TCP_OUTCOME_MAX = 6,
};

/* Address families as the kernel numbers them. */
enum tapio_family {
	TAPIO_AF_INET = 2,
	TAPIO_AF_INET6 = 10,
};

/* Series of the in-kernel connect-latency histogram: outcome x family. */
#define TAPIO_TCP_HIST_SERIES (TAPIO_TCP_OUTCOME_MAX * 2)
/* log2(ns) buckets: bucket i counts durations in [2^i, 2^(i+1)) ns;
 * 2^40 ns is 18 minutes, far past any SYN retry budget. */
#define TAPIO_HIST_BUCKETS 40

/* Why an event did not reach userspace whole. Index into each probe's
 * per-CPU `tapio_lost` array map. */
enum tapio_lost_reason {
	/* bpf_ringbuf_reserve failed: userspace is not draining fast enough
	 * or the ring buffer is too small for the burst. */
	TAPIO_LOST_RINGBUF_FULL = 0,
	/* A tracking map (LRU or hash) refused an insert. */
	TAPIO_LOST_MAP_FULL = 1,
	/* A kernel or user memory read failed; the event was dropped. */
	TAPIO_LOST_READ_ERROR = 2,
	TAPIO_LOST_REASON_MAX = 3,
};

/* Bits of tapio_process_exec.flags. */
enum tapio_exec_flags {
	/* filename did not fit in TAPIO_PATH_LEN. */
	TAPIO_EXEC_FILENAME_TRUNCATED = 1,
	/* argv did not fit in TAPIO_ARGS_LEN. */
	TAPIO_EXEC_ARGS_TRUNCATED = 2,
	/* reading argv from user memory failed; args is empty. */
	TAPIO_EXEC_ARGS_UNREADABLE = 4,
};

/* Common to every record. 56 bytes. */
struct tapio_event_header {
	__u64 ts_ns;        /* CLOCK_BOOTTIME ns when the kernel saw the event */
	__u64 cgroup_id;    /* cgroup v2 id (kernfs inode) of the task */
	__u32 kind;         /* enum tapio_event_kind */
	__u32 pid;          /* thread-group id (userspace "pid") */
	__u32 tid;          /* thread id */
	__u32 ppid;         /* real parent's thread-group id */
	__u32 uid;          /* real uid */
	__u32 gid;          /* real gid */
	char comm[TAPIO_COMM_LEN]; /* process (group leader) comm, NUL-terminated */
};

/* process.exec: emitted after a successful execve, from the new image. */
struct tapio_process_exec {
	struct tapio_event_header hdr;
	__u64 start_ns;     /* CLOCK_BOOTTIME ns the process (tgid) started */
	__u32 flags;        /* enum tapio_exec_flags bits */
	__u32 old_pid;      /* pid before exec (differs when a thread execs) */
	__u16 filename_len; /* bytes used in filename, without the NUL */
	__u16 args_len;     /* bytes used in args (NUL-separated argv) */
	__u32 _pad0;
	char cgroup_leaf[TAPIO_CGROUP_NAME_LEN];   /* the task's cgroup dir name */
	char cgroup_parent[TAPIO_CGROUP_NAME_LEN]; /* its parent's dir name */
	char filename[TAPIO_PATH_LEN];             /* path given to execve */
	char args[TAPIO_ARGS_LEN];                 /* argv, NUL-separated */
};

/* process.exit: emitted when the last thread of a process exits. */
struct tapio_process_exit {
	struct tapio_event_header hdr;
	__u64 start_ns;     /* CLOCK_BOOTTIME ns the process started */
	__s32 exit_code;    /* exit status as exit(2) got it (0..255) */
	__u32 exit_signal;  /* signal that killed it, 0 if it exited */
	__u32 core_dumped;  /* 1 when a core was dumped */
	__u32 _pad0;
};

/* process.fork: a new process (not a thread) was created. The header
 * describes the parent, the child fields the new process. */
struct tapio_process_fork {
	struct tapio_event_header hdr;
	__u64 child_start_ns; /* CLOCK_BOOTTIME ns the child started */
	__u32 child_pid;      /* child's thread-group id */
	__u32 _pad0;
};

/* One side of a TCP connection. IPv4 is stored v4-mapped (::ffff:a.b.c.d),
 * so one layout covers both families; `family` says which it was. */
struct tapio_tcp_tuple {
	__u8 saddr[16];   /* local address, network order */
	__u8 daddr[16];   /* remote address, network order */
	__u16 sport;      /* local port, host order */
	__u16 dport;      /* remote port, host order */
	__u16 family;     /* enum tapio_family */
	__u16 _pad0;
};

/* tcp.connect: one outbound connection attempt, SYN sent to its outcome.
 * The header describes the process that called connect(). */
struct tapio_tcp_connect {
	struct tapio_event_header hdr;
	__u64 start_ns;   /* CLOCK_BOOTTIME ns the SYN was sent (SYN_SENT) */
	__u64 end_ns;     /* CLOCK_BOOTTIME ns of ESTABLISHED or failure */
	__u64 sock_cookie; /* socket cookie, to join with the close record */
	__u32 outcome;    /* enum tapio_tcp_outcome */
	__s32 error;      /* sk_err at failure (errno), 0 on success */
	struct tapio_tcp_tuple tuple;
};

/* network.connection.close: an established connection (either direction)
 * went away. The header is the connecting process for outbound
 * connections, the closing task otherwise. */
struct tapio_tcp_close {
	struct tapio_event_header hdr;
	__u64 established_ns; /* CLOCK_BOOTTIME ns it became ESTABLISHED */
	__u64 bytes_sent;     /* tcp_sock.bytes_acked: bytes the peer acked */
	__u64 bytes_received; /* tcp_sock.bytes_received */
	__u64 sock_cookie;
	__u32 inbound;        /* 1: accepted from a listener, 0: connect() */
	__u32 srtt_us;        /* smoothed RTT at close, microseconds */
	struct tapio_tcp_tuple tuple;
};

/* dns: one DNS packet to or from a server port, as the client's kernel
 * sent or delivered it. The header is the sending (query) or receiving
 * (response) process. The tuple is oriented client -> server: saddr/sport
 * are this host's client socket, daddr/dport the server. */
struct tapio_dns_packet {
	struct tapio_event_header hdr;
	__u16 payload_len;  /* bytes of payload copied into `payload` */
	__u16 wire_len;     /* payload bytes on the wire (UDP or TCP segment) */
	__u8 direction;     /* enum tapio_dns_direction */
	__u8 protocol;      /* IPPROTO_UDP (17) or IPPROTO_TCP (6) */
	__u16 flags;        /* enum tapio_dns_flags bits */
	struct tapio_tcp_tuple tuple;
	__u8 payload[TAPIO_DNS_PAYLOAD];
};

/* Value of the per-CPU connect-latency histogram map, one per series. */
struct tapio_hist {
	__u64 buckets[TAPIO_HIST_BUCKETS];
	__u64 sum_ns;
};


/* ---- tc probe (ebpf/tc.bpf.c) ---------------------------------------- */

/* L7 protocol of a flow, decided from its first payload bytes. */
enum tapio_tc_proto {
	TAPIO_TC_UNKNOWN = 0,
	TAPIO_TC_HTTP = 1,       /* HTTP/1.x request or response line */
	TAPIO_TC_HTTP2 = 2,      /* HTTP/2 connection preface, not gRPC */
	TAPIO_TC_GRPC = 3,       /* HTTP/2 whose DATA frames carry gRPC messages */
	TAPIO_TC_TLS = 4,        /* TLS ClientHello / ServerHello */
	TAPIO_TC_DNS = 5,        /* DNS header to/from port 53 or 5353 */
	TAPIO_TC_MYSQL = 6,      /* MySQL server greeting (protocol 10) */
	TAPIO_TC_POSTGRESQL = 7, /* startup, SSLRequest or GSSENCRequest */
	TAPIO_TC_REDIS = 8,      /* RESP array */
	TAPIO_TC_KAFKA = 9,      /* Kafka request header, whole in one segment */
	TAPIO_TC_PROTO_MAX = 10,
};

/* Hook direction. */
enum tapio_tc_direction {
	TAPIO_TC_INGRESS = 0, /* received on the interface */
	TAPIO_TC_EGRESS = 1,  /* transmitted on the interface */
};

/* Circuit-breaker state of one backend (userspace runs the state machine
 * and writes it into tapio_tc_cb; the kernel skips OPEN backends). */
enum tapio_tc_cb_state {
	TAPIO_TC_CB_CLOSED = 0,
	TAPIO_TC_CB_OPEN = 1,
	TAPIO_TC_CB_HALF_OPEN = 2,
};

/* Largest number of backends of one virtual service. */
#define TAPIO_TC_MAX_BACKENDS 16
/* Largest number of virtual services, per policy generation. */
#define TAPIO_TC_MAX_SERVICES 64
/* Largest number of chaos experiments, per policy generation. */
#define TAPIO_TC_MAX_CHAOS 16
/* TLS server name bytes kept (longer names are cut, flagged). */
#define TAPIO_TC_SNI_LEN 128

/* Key of the per-CPU traffic counters (tapio_tc_counts). */
struct tapio_tc_key {
	__u32 ifindex;     /* interface the hook runs on */
	__u16 server_port; /* the flow's server port, host order */
	__u8 proto;        /* enum tapio_tc_proto */
	__u8 direction;    /* enum tapio_tc_direction */
};

/* Value of tapio_tc_counts. */
struct tapio_tc_count {
	__u64 packets; /* packets (a GSO packet counts its segments) */
	__u64 bytes;   /* L4 payload bytes (TCP/UDP data, headers excluded) */
};

/* A virtual service's or backend's address: IPv4, network order. */
struct tapio_tc_addr {
	__u32 addr;  /* IPv4 address, network order */
	__u16 port;  /* network order */
	__u8 proto;  /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 generation; /* policy generation (0/1) in tapio_tc_services keys, 0 elsewhere */
};

/* One backend of a service. */
struct tapio_tc_backend {
	__u32 addr;   /* IPv4, network order */
	__u16 port;   /* network order */
	__u16 weight; /* relative share of new flows, 1..1000 */
};

/* Value of tapio_tc_services. */
struct tapio_tc_service {
	__u32 n_backends;   /* backends used */
	__u32 total_weight; /* sum of their weights */
	struct tapio_tc_backend backends[TAPIO_TC_MAX_BACKENDS];
};

/* Per-backend connection counters (per-CPU, keyed by tapio_tc_addr). */
struct tapio_tc_backend_stats {
	__u64 connections; /* new flows steered to this backend */
	__u64 failures;    /* a RST answered the SYN */
	__u64 successes;   /* a SYN-ACK answered the SYN */
};

/* One chaos experiment (tapio_tc_chaos, generation * MAX_CHAOS + slot). */
struct tapio_tc_chaos {
	__u64 expires_ns;     /* CLOCK_BOOTTIME ns after which it does nothing */
	__u64 delay_ns;       /* EDT delay added to matching egress packets */
	__u32 loss_threshold; /* drop when bpf_get_prandom_u32() < this */
	__u16 port;           /* host order; matches either port; 0 = any */
	__u8 proto;           /* IPPROTO_TCP/UDP; 0 = any */
	__u8 direction;       /* 0 ingress, 1 egress, 2 both */
};

/* Per-generation switches (tapio_tc_cfg[generation]). */
struct tapio_tc_cfg {
	__u32 n_chaos;     /* experiments in use in this generation */
	__u32 chaos_off;   /* kill switch: 1 turns every experiment off */
};

/* Bits of tapio_tc_flow.flags. */
enum tapio_tc_flow_flags {
	TAPIO_TC_SNI_CUT = 1, /* the server name was longer than TAPIO_TC_SNI_LEN */
};

/* network.flow.classified: a flow's L7 protocol was decided. The header
 * has no process (TC runs in softirq): pid 0, comm empty. The tuple is
 * oriented client -> server. */
struct tapio_tc_flow {
	struct tapio_event_header hdr;
	struct tapio_tcp_tuple tuple;
	__u32 ifindex;    /* interface the hook runs on */
	__u16 sni_len;    /* bytes used in sni */
	__u8 proto;       /* enum tapio_tc_proto */
	__u8 l4proto;     /* IPPROTO_TCP or IPPROTO_UDP */
	__u32 flags;      /* enum tapio_tc_flow_flags bits */
	__u32 _pad0;
	char sni[TAPIO_TC_SNI_LEN]; /* TLS server_name, not NUL-terminated */
};

#pragma clang diagnostic pop

#endif /* TAPIO_EVENTS_H */
