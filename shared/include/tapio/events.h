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
typedef __INT16_TYPE__ __s16;
typedef __UINT32_TYPE__ __u32;
typedef __INT32_TYPE__ __s32;
typedef __INT64_TYPE__ __s64;
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
	TAPIO_EVENT_DNS_ENCRYPTED = 21,
	TAPIO_EVENT_XDP_BLOCK = 30,
	TAPIO_EVENT_SEC_CRED = 40,
	TAPIO_EVENT_SEC = 41,
	TAPIO_EVENT_LSM_DECISION = 50,
	TAPIO_EVENT_TC_FLOW = 60,
	TAPIO_EVENT_OOM_KILL = 70,
	TAPIO_EVENT_IO_URING_CREATE = 71,
	TAPIO_EVENT_ETCD_WAL_FSYNC = 80,
	TAPIO_EVENT_UNIT = 81,
	TAPIO_EVENT_NETNS_CREATE = 90,
	TAPIO_EVENT_CNI_EXEC = 91,
};

/* DNS payload bytes copied per packet: the classic UDP message limit.
 * Header and question always fit; long answer sections are cut (flagged). */
#define TAPIO_DNS_PAYLOAD 512
/* A packet whose payload fits in this many bytes (most queries and short
 * answers) takes a record cut after them: 232 bytes instead of the whole
 * struct's 616, so the ring holds 2.6x as many. Such a record is shorter
 * than sizeof(struct tapio_dns_packet): its reader takes payload_len bytes
 * from `payload` and must accept either size. */
#define TAPIO_DNS_PAYLOAD_SMALL 128

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

/* Slots of the per-CPU `tapio_twin` array of a probe whose tp_btf program
 * has a twin doing the runs the kernel skips for it as recursion
 * (ebpf/network.bpf.c). */
enum tapio_twin_slot {
	/* Runs the twin did: misses of the first program it covered. */
	TAPIO_TWIN_COVERED = 0,
	TAPIO_TWIN_SLOTS = 1,
};

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
	/* A tracked object's key came back while its entry was still there:
	 * the kernel reused a socket whose end (connect result, close) no
	 * program saw, so the record that end would have made is lost.
	 * Counted when the record would have been sampled in. */
	TAPIO_LOST_END_UNSEEN = 3,
	TAPIO_LOST_REASON_MAX = 4,
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

/* How an encrypted DNS connection was recognised. */
enum tapio_dns_encryption {
	TAPIO_DNS_DOT = 1, /* TLS ClientHello to a DNS-over-TLS port (853) */
	TAPIO_DNS_DOH = 2, /* TLS ClientHello whose server name is a configured
			    * DNS-over-HTTPS resolver */
};

/* Largest number of configured DoH resolver names (tc and dns maps). */
#define TAPIO_DOH_MAX_NAMES 64

/* dns: a local process opened an encrypted DNS connection (its
 * ClientHello left this host). The lookups inside cannot be read; the
 * header is the socket's owner as learnt at connect() (pid 0 when the
 * connect was not seen). The tuple is oriented client -> server. */
struct tapio_dns_encrypted {
	struct tapio_event_header hdr;
	struct tapio_tcp_tuple tuple;
	__u8 encryption; /* enum tapio_dns_encryption */
	__u8 _pad0[7];
};

/* What a security record (struct tapio_sec_event) reports. */
enum tapio_sec_op {
	/* A capability check (cap_capable tracepoint, or fexit/kretprobe of
	 * cap_capable). arg0: capability number; arg1: cap_capable's opts
	 * (fexit/kprobe only); ret: 0 granted, negative errno denied. */
	TAPIO_SEC_CAPABILITY = 1,
	/* ptrace(2). arg0: request, arg1: addr; target_pid. */
	TAPIO_SEC_PTRACE = 2,
	/* process_vm_writev(2). target_pid; ret: bytes written or -errno. */
	TAPIO_SEC_VM_WRITEV = 3,
	/* exec of a file with no name on disk (memfd or unlinked tmpfs
	 * file). name: the file's dentry name; ino/dev: its inode;
	 * arg0: superblock magic. */
	TAPIO_SEC_MEMFD_EXEC = 4,
	/* mmap/mprotect/pkey_mprotect with PROT_WRITE|PROT_EXEC.
	 * arg0: address (mmap: the mapping it returned), arg1: length,
	 * arg2: prot, arg3: mmap flags (0 for mprotect). */
	TAPIO_SEC_MEMORY_WX = 5,
	/* init_module/finit_module. name: module name (module_load
	 * tracepoint) or the file's name (finit_module). */
	TAPIO_SEC_MODULE_LOAD = 6,
	/* bpf(BPF_PROG_LOAD). arg0: prog type, arg1: insn count,
	 * arg2: expected attach type; name: prog name; ret: fd or -errno. */
	TAPIO_SEC_BPF_LOAD = 7,
	/* request_module(): the kernel asked modprobe for a module it wants
	 * (a socket family, a filesystem, a device...). name: the module
	 * alias asked for; arg0: 1 if the caller waits for it. */
	TAPIO_SEC_MODULE_REQUEST = 8,
	/* Changes to a watched file. ino/dev: the matched file (fd ops) or
	 * 0 (path ops); watch: index of the watched path that matched;
	 * name: the path as the caller passed it (path ops) or the file's
	 * dentry name (fd ops). */
	TAPIO_SEC_FILE_WRITE = 10,    /* arg0: fd; arg1: writes suppressed since the last record */
	TAPIO_SEC_FILE_TRUNCATE = 11, /* arg0: fd (ftruncate, open) or length (truncate) */
	TAPIO_SEC_FILE_RENAME = 12,
	TAPIO_SEC_FILE_UNLINK = 13,
	TAPIO_SEC_FILE_CHMOD = 14,    /* arg1: new mode */
	TAPIO_SEC_FILE_CHOWN = 15,    /* arg1: new uid, arg2: new gid (u32 -1: unchanged) */
};

/* Bits of tapio_sec_event.flags. */
enum tapio_sec_flags {
	/* name did not fit in TAPIO_PATH_LEN. */
	TAPIO_SEC_NAME_TRUNCATED = 1,
	/* The file was matched through its fd (exact inode match; the
	 * ancestor level that matched is in arg2). */
	TAPIO_SEC_BY_FD = 2,
	/* rename: the destination path matched, not the source. */
	TAPIO_SEC_RENAME_TARGET = 4,
	/* memfd exec: the dentry name starts with "memfd:". */
	TAPIO_SEC_MEMFD_NAMED = 8,
	/* file op reached through open(O_TRUNC). */
	TAPIO_SEC_FROM_OPEN = 16,
};

/* A task's identity as struct cred holds it. */
struct tapio_ids {
	__u32 uid;   /* real */
	__u32 euid;  /* effective */
	__u32 suid;  /* saved */
	__u32 fsuid; /* filesystem */
	__u32 gid;
	__u32 egid;
	__u32 sgid;
	__u32 fsgid;
};

/* How a credential change was seen (tapio_sec_cred.source). */
enum tapio_sec_cred_source {
	/* sys_enter/sys_exit of a set*id syscall or exec: header after the
	 * change. */
	TAPIO_SEC_CRED_SYSCALL = 0,
	/* fentry/kprobe of commit_creds(): any path (capset, unshare,
	 * setns, keyctl...); header before the change, ids in new_ids. */
	TAPIO_SEC_CRED_COMMIT = 1,
};

/* The security probe's syscall dispatcher (one tp_btf sys_enter/sys_exit
 * pair instead of one tracepoint per syscall): the value of
 * tapio_sec_syscalls[nr], filled by userspace for the syscalls of the
 * configured families only; 0 (every other syscall) returns at once.
 * Numbers are x86_64's (compat syscalls are skipped in the kernel). */
enum tapio_sec_syscall {
	TAPIO_SEC_SYS_NONE = 0,
	TAPIO_SEC_SYS_CRED = 1,          /* set*id, execve, execveat */
	TAPIO_SEC_SYS_PTRACE = 2,
	TAPIO_SEC_SYS_VM_WRITEV = 3,     /* process_vm_writev */
	TAPIO_SEC_SYS_MMAP = 4,
	TAPIO_SEC_SYS_MPROTECT = 5,      /* mprotect, pkey_mprotect */
	TAPIO_SEC_SYS_BPF = 6,
	TAPIO_SEC_SYS_INIT_MODULE = 7,
	TAPIO_SEC_SYS_FINIT_MODULE = 8,
	TAPIO_SEC_SYS_WRITE = 9,         /* write, pwrite64, writev, pwritev, pwritev2 */
	TAPIO_SEC_SYS_FTRUNCATE = 10,
	TAPIO_SEC_SYS_FCHMOD = 11,
	TAPIO_SEC_SYS_FCHOWN = 12,
	TAPIO_SEC_SYS_OPENAT = 13,
	TAPIO_SEC_SYS_OPEN = 14,
	TAPIO_SEC_SYS_UNLINK = 15,       /* unlink, rmdir */
	TAPIO_SEC_SYS_UNLINKAT = 16,
	TAPIO_SEC_SYS_CHMOD = 17,
	TAPIO_SEC_SYS_FCHMODAT = 18,     /* fchmodat, fchmodat2 */
	TAPIO_SEC_SYS_CHOWN = 19,        /* chown, lchown */
	TAPIO_SEC_SYS_FCHOWNAT = 20,
	TAPIO_SEC_SYS_TRUNCATE = 21,
	TAPIO_SEC_SYS_RENAME = 22,
	TAPIO_SEC_SYS_RENAMEAT = 23,     /* renameat, renameat2 */
};

/* Entries of tapio_sec_syscalls: above every x86_64 syscall number (the
 * highest is in the 460s in 6.18). x32 numbers (bit 30 set) fall outside
 * and are skipped, as the per-syscall tracepoints skip them. */
#define TAPIO_SEC_SYSCALL_MAX 512

/* security.credentials.change: the task's ids or capabilities changed
 * (a set*id syscall or an exec, or with commit_creds any path). */
struct tapio_sec_cred {
	struct tapio_event_header hdr;
	__u64 old_cap_eff;  /* effective capability set before (bit n: CAP n) */
	__u64 new_cap_eff;  /* ... and after */
	__u64 old_cap_prm;  /* permitted set before */
	__u64 new_cap_prm;  /* ... and after */
	struct tapio_ids old_ids;
	struct tapio_ids new_ids;
	__u32 syscall_nr;   /* syscall number (x86_64 numbering); 0 if none */
	__u32 source;       /* enum tapio_sec_cred_source */
};

/* One security signal other than credentials; see enum tapio_sec_op for
 * what each field means per op. The header is the acting task. */
struct tapio_sec_event {
	struct tapio_event_header hdr;
	__u64 arg0;
	__u64 arg1;
	__u64 arg2;
	__u64 arg3;
	__u64 ino;          /* inode number, when the op has a file */
	__s64 ret;          /* the syscall's return value (0 if none) */
	__u32 op;           /* enum tapio_sec_op */
	__u32 syscall_nr;   /* syscall number (x86_64 numbering), 0 if none */
	__u32 target_pid;   /* ptrace / process_vm_writev target tgid or tid */
	__u32 dev;          /* kernel dev_t (major << 20 | minor) of ino's superblock */
	__u32 watch;        /* file ops: index of the matched watched path */
	__u32 flags;        /* enum tapio_sec_flags bits */
	__u16 name_len;     /* bytes used in name, without the NUL */
	__u16 _pad0[3];
	char name[TAPIO_PATH_LEN];
};

/* Value of the per-CPU connect-latency histogram map, one per series. */
struct tapio_hist {
	__u64 buckets[TAPIO_HIST_BUCKETS];
	__u64 sum_ns;
};

/* Why the XDP filter passed or dropped a packet: the index of its counter.
 * Whether a reason passes or drops is fixed (userspace's table). */
enum tapio_xdp_reason {
	TAPIO_XDP_PASS = 0,            /* every enabled check passed */
	TAPIO_XDP_ALLOWLIST = 1,       /* source in the allow list */
	TAPIO_XDP_ESTABLISHED = 2,     /* reply on a flow this host sent on */
	TAPIO_XDP_NOT_IP = 3,          /* not IPv4/IPv6 (ARP, LLDP...): passed */
	TAPIO_XDP_MALFORMED = 4,       /* headers truncated or inconsistent: passed to the stack, which drops it */
	TAPIO_XDP_FRAGMENT = 5,        /* later IP fragment: address checks only */
	TAPIO_XDP_UNPARSED_L4 = 6,     /* transport header not found (extension header chain too long): address checks only */
	TAPIO_XDP_BLOCKLIST = 7,       /* source in the block list: dropped */
	TAPIO_XDP_AUTO_BLOCK = 8,      /* source under an active auto-block: dropped */
	TAPIO_XDP_SYN_FLOOD = 9,       /* SYN over the per-source or per-destination rate: dropped */
	TAPIO_XDP_RATE_LIMIT = 10,     /* source over its packet rate: dropped */
	TAPIO_XDP_DNS_UNSOLICITED = 11, /* DNS response matching no recent query: dropped */
	TAPIO_XDP_DNS_OVERSIZE = 12,   /* DNS response over the size limit: dropped */
	TAPIO_XDP_REASON_MAX = 13,
};

/* Bits of tapio_xdp_policy.flags: which checks are on. */
enum tapio_xdp_policy_flags {
	TAPIO_XDP_F_ALLOW4 = 1,     /* allow list has IPv4 entries */
	TAPIO_XDP_F_ALLOW6 = 2,
	TAPIO_XDP_F_BLOCK4 = 4,     /* block list has IPv4 entries */
	TAPIO_XDP_F_BLOCK6 = 8,
	TAPIO_XDP_F_RATE = 16,      /* per-source rate limit */
	TAPIO_XDP_F_SYN = 32,       /* SYN-flood defence */
	TAPIO_XDP_F_DNS = 64,       /* DNS-amplification defence */
};

/* One generation of the XDP policy's scalars (the CIDR lists are LPM maps
 * of the same generation). Rates are GCRA: one packet per `*_interval_ns`;
 * a packet conforms while the theoretical arrival time is at most
 * `*_tolerance_ns` ((burst - 1) intervals) ahead of now. A zero interval
 * turns a check off. */
struct tapio_xdp_policy {
	__u64 rate_interval_ns;
	__u64 rate_tolerance_ns;
	__u64 syn_src_interval_ns;
	__u64 syn_src_tolerance_ns;
	__u64 syn_dst_interval_ns;
	__u64 syn_dst_tolerance_ns;
	__u64 block_ns;      /* auto-block duration */
	__u64 dns_window_ns; /* a response must follow its query within this */
	__u32 dns_max_size;  /* largest UDP payload from port 53; 0 = any */
	__u32 flags;         /* enum tapio_xdp_policy_flags */
};

/* The XDP counters are a per-CPU array indexed by
 * (ifindex % TAPIO_XDP_IF_SLOTS) * TAPIO_XDP_REASON_MAX + reason. */
#define TAPIO_XDP_IF_SLOTS 256

struct tapio_xdp_counter {
	__u64 packets;
	__u64 bytes;
};

/* A source auto-blocked by the SYN-flood check (value of the
 * `xdp_autoblock` map, keyed by the 16-byte, v4-mapped address). */
struct tapio_xdp_block_state {
	__u64 since_ns;   /* CLOCK_BOOTTIME ns the block started */
	__u64 until_ns;   /* ... and ends */
	__u64 dropped;    /* packets dropped under this block (approximate across CPUs) */
	__u32 ifindex;    /* where it started */
	__u32 _pad;
};

/* security.ddos_mitigation start, from the XDP filter (softirq: the
 * header's process fields are zero). */
struct tapio_xdp_block {
	struct tapio_event_header hdr;
	__u64 until_ns;
	__u32 ifindex;
	__u32 reason;     /* enum tapio_xdp_reason */
	__u8 addr[16];    /* source, IPv6 or v4-mapped */
};

/* Enforcement hooks (probe `lsm`). */
enum tapio_lsm_hook {
	TAPIO_LSM_CONNECT = 1,       /* cgroup/connect4|6, sendmsg4|6 */
	TAPIO_LSM_BIND = 2,          /* cgroup/bind4|6 */
	TAPIO_LSM_SOCKET_CREATE = 3, /* cgroup/sock_create */
	TAPIO_LSM_DEVICE = 4,        /* cgroup/dev */
	TAPIO_LSM_FILE_OPEN = 5,     /* lsm/file_open */
	TAPIO_LSM_EXEC = 6,          /* lsm/bprm_check_security */
	TAPIO_LSM_PTRACE = 7,        /* lsm/ptrace_access_check */
	TAPIO_LSM_MODULE_LOAD = 8,   /* lsm/kernel_read_file, kernel_load_data,
				      * kernel_module_request */
	TAPIO_LSM_BPF = 9,           /* lsm/bpf (BPF_PROG_LOAD) */
	TAPIO_LSM_FILE_MODIFY = 10,  /* lsm/path_{unlink,rmdir,rename,truncate,chmod,chown},
				      * file_truncate, file_open for writing */
	TAPIO_LSM_HOOK_MAX = 11,
};

/* file_modify operations: bits of tapio_lsm_rule.access (0 = any) and the
 * one operation in tapio_lsm_decision.access. */
enum tapio_lsm_file_op {
	TAPIO_LSM_OP_WRITE = 1,    /* open for writing (file_open, FMODE_WRITE) */
	TAPIO_LSM_OP_TRUNCATE = 2, /* path_truncate, file_truncate (6.2+) */
	TAPIO_LSM_OP_RENAME = 4,   /* path_rename, the source or the replaced target */
	TAPIO_LSM_OP_UNLINK = 8,   /* path_unlink, path_rmdir */
	TAPIO_LSM_OP_CHMOD = 16,   /* path_chmod */
	TAPIO_LSM_OP_CHOWN = 32,   /* path_chown */
};

enum tapio_lsm_action {
	TAPIO_LSM_AUDIT = 1, /* allow and report */
	TAPIO_LSM_DENY = 2,  /* -EPERM and report */
};

/* Bits of tapio_lsm_rule.flags. */
enum tapio_lsm_rule_flags {
	TAPIO_LSM_R_PREFIX = 1,        /* inode rule covers the directory's subtree */
	TAPIO_LSM_R_INCLUDE_TAPIO = 2, /* applies to Tapio itself too */
};

/* Per hook and generation: which lookups its rules need (0: no rules, the
 * program returns at once). */
enum tapio_lsm_hook_flags {
	TAPIO_LSM_F_RULES = 1,
	TAPIO_LSM_F_EXACT_PROTO = 2, /* network rules naming a protocol */
	TAPIO_LSM_F_ANY_PROTO = 4,   /* ... and not naming one */
	TAPIO_LSM_F_EXACT_PORT = 8,  /* network rules naming a port */
	TAPIO_LSM_F_ANY_PORT = 16,   /* ... and not naming one */
	TAPIO_LSM_F_ANY_DEV = 32,    /* inode rules without a device (key dev 0) */
};

/* Rules per policy generation; the rule maps hold two generations. */
#define TAPIO_LSM_MAX_RULES 16384
/* Rules sharing one map key the kernel walks (a bounded loop); validation
 * refuses a policy with more. */
#define TAPIO_LSM_MAX_CHAIN 8

/* One rule's conditions beyond its map key; rules with the same key are
 * chained through `next` (index + 1, 0 ends), checked in config order. */
struct tapio_lsm_rule {
	__u64 cgroup_id;   /* 0: any; else this cgroup or a descendant */
	__u32 cgroup_level; /* depth of cgroup_id below the root */
	__u32 uid;         /* 0xffffffff: any */
	__u32 action;      /* enum tapio_lsm_action */
	__u32 hook;        /* enum tapio_lsm_hook */
	__u32 next;        /* chained rule index + 1, 0 = none */
	__u32 flags;       /* enum tapio_lsm_rule_flags */
	__u32 access;      /* device rules: BPF_DEVCG_ACC_* mask; file_modify:
			    * enum tapio_lsm_file_op mask (0 = any) */
	__u32 container;   /* 0: any; else slot + 1 of a container id: the task's
			    * cgroup or an ancestor is one of that container's */
	char comm[TAPIO_COMM_LEN]; /* empty: any */
};

/* security.policy_decision: a rule matched (deny or audit). */
struct tapio_lsm_decision {
	struct tapio_event_header hdr;
	__u64 ino;        /* file rules: the file's inode */
	__u32 rule;       /* rule index in its generation */
	__u32 generation; /* 0 or 1 */
	__u32 hook;       /* enum tapio_lsm_hook */
	__u32 action;     /* enum tapio_lsm_action */
	__u32 dev;        /* file rules: the superblock's dev_t (kernel encoding) */
	__u32 port;       /* connect/bind: host order */
	__u32 family;     /* connect/bind/socket_create */
	__u32 proto;      /* connect/bind: IPPROTO_*; socket_create: type */
	__u32 major;      /* device rules */
	__u32 minor;
	__u32 access;     /* device rules: requested access mask; file_modify:
			   * the operation (enum tapio_lsm_file_op); module_load:
			   * 1 for request_module() (auto-loading), 0 for a load */
	__u32 target_pid; /* ptrace: the target */
	__u8 addr[16];    /* connect/bind: IPv6 or v4-mapped */
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
	TAPIO_TC_DOT = 10,       /* TLS ClientHello/ServerHello on a DoT port (853) */
	TAPIO_TC_DOH = 11,       /* DNS over HTTPS: TLS to a configured resolver
				  * name, or h2c carrying application/dns-message */
	TAPIO_TC_PROTO_MAX = 12,
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
	__u32 loss_threshold; /* drop when bpf_get_prandom_u32() < this; U32_MAX: always */
	__u16 port;           /* host order; matches either port; 0 = any */
	__u8 proto;           /* IPPROTO_TCP/UDP; 0 = any */
	__u8 direction;       /* 0 ingress, 1 egress, 2 both */
};

/* Per-generation switches (tapio_tc_cfg[generation]). */
struct tapio_tc_cfg {
	__u32 n_chaos;      /* experiments in use in this generation */
	__u32 chaos_off;    /* kill switch: 1 turns every experiment off */
	__u32 max_failures; /* failures in a row that open a backend's breaker in
			     * the kernel (0: no breaker) */
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

/* Which hook wrote a tapio_oom_kill (its `source`). */
enum tapio_oom_source {
	/* tp_btf/mark_victim with the victim's task_struct (the two-argument
	 * prototype): header, cgroup and memory are the victim's own. */
	TAPIO_OOM_SRC_TP_BTF = 0,
	/* tracepoint/oom/mark_victim: only the record's fields (see flags);
	 * cgroup id and names are the triggering task's (current). */
	TAPIO_OOM_SRC_TRACEPOINT = 1,
};

/* Bits of tapio_oom_kill.flags: which fields hold data. A kernel whose
 * mark_victim tracepoint carries only the pid sets none of them. */
enum tapio_oom_flags {
	TAPIO_OOM_HAS_COMM = 1,      /* hdr.comm is the victim's */
	TAPIO_OOM_HAS_UID = 2,       /* hdr.uid is the victim's uid */
	TAPIO_OOM_HAS_MEMORY = 4,    /* total_vm, anon/file/shmem rss, pgtables */
	TAPIO_OOM_HAS_SWAP = 8,      /* swap_bytes (tp_btf only) */
	TAPIO_OOM_HAS_SCORE_ADJ = 16, /* oom_score_adj */
	TAPIO_OOM_HAS_TGID = 32,     /* hdr.pid is the victim's tgid; without it
				      * hdr.pid is the victim thread's id (the
				      * tracepoint's `pid`, the same for a
				      * single-threaded process) */
	TAPIO_OOM_VICTIM_CGROUP = 64, /* cgroup id and names are the victim's;
				       * without it, the trigger's (for a memcg
				       * OOM, a task in the OOMing cgroup) */
};

/* kernel.oom_kill: the OOM killer chose a victim (mark_victim, right
 * after it sent SIGKILL). The header is the victim: pid (tgid), tid (the
 * thread marked), ppid, uid, gid, comm, cgroup_id; fields the hook could
 * not see are 0 (see flags). Memory figures are the kernel's own
 * approximations (per-CPU counters not folded in), the ones its
 * "Killed process" line prints, in bytes. */
struct tapio_oom_kill {
	struct tapio_event_header hdr;
	__u64 total_vm_bytes;  /* mapped virtual memory */
	__u64 anon_rss_bytes;  /* resident anonymous pages */
	__u64 file_rss_bytes;  /* resident file-backed pages */
	__u64 shmem_rss_bytes; /* resident shared-memory pages */
	__u64 swap_bytes;      /* swapped-out pages (swap entries) */
	__u64 pgtables_bytes;  /* page tables */
	__u32 trigger_pid;     /* tgid of the task whose allocation OOMed (current) */
	__u32 trigger_tid;     /* its thread id */
	__u32 flags;           /* enum tapio_oom_flags bits */
	__u32 source;          /* enum tapio_oom_source */
	__s16 oom_score_adj;   /* the victim's oom_score_adj (-1000..1000) */
	__u16 _pad0[3];
	char trigger_comm[TAPIO_COMM_LEN];         /* trigger's process comm */
	char cgroup_leaf[TAPIO_CGROUP_NAME_LEN];   /* cgroup dir name (see flags) */
	char cgroup_parent[TAPIO_CGROUP_NAME_LEN]; /* its parent's dir name */
};

/* io_uring: completions are counted per opcode and result in the kernel
 * (per-CPU array, index opcode * TAPIO_IO_URING_RESULTS + result), and a
 * sampled share of requests is timed from submission to completion into
 * a per-CPU struct tapio_hist per opcode. Opcodes at or past
 * TAPIO_IO_URING_OPS - 1 share the last slot. */
#define TAPIO_IO_URING_OPS 64
enum tapio_io_uring_result {
	TAPIO_IO_URING_OK = 0,    /* the CQE's res >= 0 */
	TAPIO_IO_URING_ERROR = 1, /* res < 0 (-errno) */
	TAPIO_IO_URING_RESULTS = 2,
};

/* kernel.io_uring.create: a process set up an io_uring (io_uring_setup).
 * The header is the creating task. Operations on the ring go through
 * io_uring_enter, or none at all with SQPOLL (a kernel thread polls the
 * ring), so syscall-based monitors see little of what a ring does. */
struct tapio_io_uring_create {
	struct tapio_event_header hdr;
	__s32 fd;         /* the ring's file descriptor */
	__u32 sq_entries; /* submission queue size */
	__u32 cq_entries; /* completion queue size */
	__u32 flags;      /* IORING_SETUP_* bits */
};

/* Sampled memory allocations (kernel probe): page and slab allocations
 * sampled 1:N in the kernel and summed per (cgroup, allocator) in a
 * per-CPU LRU hash; nothing per allocation reaches userspace. */
enum tapio_mem_allocator {
	TAPIO_MEM_PAGE = 0,       /* kmem/mm_page_alloc: buddy allocator, PAGE_SIZE << order */
	TAPIO_MEM_KMALLOC = 1,    /* kmem/kmalloc: bytes_alloc (large ones are pages too) */
	TAPIO_MEM_KMEM_CACHE = 2, /* kmem/kmem_cache_alloc: the cache's object size */
	TAPIO_MEM_ALLOCATORS = 3,
};

/* Most sampling interval userspace accepts (the countdown draws from
 * 1..2N-1, which must fit a __u32). */
#define TAPIO_MEM_MAX_EVERY 1000000

/* The sampler of one CPU (value of a one-slot per-CPU array). Userspace
 * writes {0, N} to every CPU; 0 for `every` samples nothing. After each
 * sample, `left` is drawn uniformly from 1..2N-1 (mean N), so the sampled
 * allocations cannot lock onto a periodic pattern in the workload. */
struct tapio_mem_sampler {
	__u32 left;  /* allocations on this CPU until the next sample */
	__u32 every; /* N: on average one allocation in N is sampled */
};

/* Key of the per-cgroup sums. */
struct tapio_mem_key {
	__u64 cgroup_id; /* cgroup v2 id of the task that was running */
	__u32 allocator; /* enum tapio_mem_allocator */
	__u32 _pad0;
};

/* Per-CPU sums for one key, already scaled by N: each sample adds N to
 * `allocations` and N times its size to `bytes`, so a change of N keeps
 * the totals estimates of the real ones. */
struct tapio_mem_usage {
	__u64 allocations; /* estimated allocations */
	__u64 bytes;       /* estimated bytes */
	__u64 samples;     /* allocations actually sampled */
};

/* The cgroup's directory names, captured at its first sample (the cgroup
 * may be gone when userspace reads the sums). */
struct tapio_mem_cgroup {
	char leaf[TAPIO_CGROUP_NAME_LEN];   /* cgroup dir name */
	char parent[TAPIO_CGROUP_NAME_LEN]; /* its parent's dir name */
};

/* etcd: process names (comm, NUL-padded) the etcd probe watches; slot i
 * of the tapio_etcd_comms array, an all-zero slot ends the list. */
#define TAPIO_ETCD_MAX_COMMS 4
#define TAPIO_ETCD_FILE_LEN 64
struct tapio_etcd_comm {
	char comm[TAPIO_COMM_LEN];
};

/* etcd request latency: the client ports (local TCP ports of the
 * connections a watched process accepts) the probe follows; slot i of the
 * tapio_etcd_ports array (a __u32 port), 0 ends the list. */
#define TAPIO_ETCD_MAX_PORTS 4

/* An fdatasync/fsync of an etcd WAL file (name ending in .wal) by a
 * watched process: every one goes into the in-kernel histogram; one
 * slower than the slow threshold is also this record (a span). The
 * header is the calling thread. */
struct tapio_etcd_fsync {
	struct tapio_event_header hdr; /* ts_ns: when the call returned */
	__u64 start_ns;    /* CLOCK_BOOTTIME ns the call entered */
	__u64 duration_ns; /* call time */
	__s64 ret;         /* the syscall's return (0 or -errno) */
	__s32 fd;          /* the WAL file's descriptor */
	__u32 syscall;     /* 0 fdatasync, 1 fsync */
	char file[TAPIO_ETCD_FILE_LEN]; /* the file's name (last path component) */
};

/* systemd units, seen as the cgroups systemd makes for them: a directory
 * named <unit>.service or <unit>.scope at level 2 or deeper of the cgroup
 * v2 hierarchy (below a slice). Longer cgroup paths are cut (flagged). */
#define TAPIO_UNIT_PATH_LEN 256
/* Units tracked at once (LRU: a unit whose removal was never seen ages
 * out instead of leaking). */
#define TAPIO_UNIT_MAX 16384

/* What happened to a unit's cgroup. */
enum tapio_unit_op {
	TAPIO_UNIT_CREATED = 1, /* mkdir: the unit's cgroup appeared (no process yet) */
	TAPIO_UNIT_STARTED = 2, /* the first process entered it (attach, or a fork into it) */
	TAPIO_UNIT_REMOVED = 3, /* rmdir: the unit is gone; state holds its totals */
};

/* Bits of tapio_unit_state.flags and tapio_unit_event.flags. */
enum tapio_unit_flags {
	/* The unit existed before Tapio started (userspace found it at start):
	 * its creation time and earlier exits are unknown. */
	TAPIO_UNIT_PREEXISTING = 1,
	/* The cgroup path was longer than TAPIO_UNIT_PATH_LEN. */
	TAPIO_UNIT_PATH_CUT = 2,
	/* The first process came by fork into the cgroup (clone3
	 * CLONE_INTO_CGROUP), not by a write to cgroup.procs. */
	TAPIO_UNIT_FORKED_IN = 4,
};

/* Per-unit totals the kernel keeps (LRU hash keyed by cgroup id), read
 * and deleted at removal. Exits are counted per process (the last thread),
 * in the unit's cgroup or any cgroup below it. */
struct tapio_unit_state {
	__u64 created_ns;      /* CLOCK_BOOTTIME ns of the mkdir; 0 when unknown */
	__u64 first_ns;        /* CLOCK_BOOTTIME ns the first process entered; 0: none yet */
	__u32 first_pid;       /* tgid of the first process; 0: none yet */
	__u32 exits;           /* processes that exited in the unit */
	__u32 failed_exits;    /* ... with a non-zero code or an unclean signal */
	__u32 oom_kills;       /* ... chosen by the OOM killer (signal->oom_mm set) */
	__u32 last_failed_pid; /* the last failed process */
	__s32 last_exit_code;  /* its exit code (0..255) */
	__u32 last_exit_signal; /* the signal that ended it, 0 if it exited */
	__u32 flags;           /* enum tapio_unit_flags bits */
};

/* systemd.unit.*: one record per op. The header is the task that did it:
 * the creator (mkdir, usually systemd), the first process (started), the
 * remover (rmdir). */
struct tapio_unit_event {
	struct tapio_event_header hdr;
	struct tapio_unit_state state; /* the unit's totals at the time */
	__u64 unit_cgroup_id;  /* the unit's cgroup id (kernfs node id) */
	__u32 op;              /* enum tapio_unit_op */
	__u32 flags;           /* enum tapio_unit_flags bits of this record */
	__u16 path_len;        /* bytes used in path, without the NUL; 0: no path */
	__u16 level;           /* cgroup level (the root is 0) */
	__u32 _pad0;
	char path[TAPIO_UNIT_PATH_LEN]; /* cgroup path from the v2 root, "/a.slice/b.service" */
};

/* Network namespaces and CNI plugins (the netns probe). Interface, address
 * and route changes come from rtnetlink in userspace, not from here. */

/* How a new network namespace was made. */
enum tapio_netns_via {
	TAPIO_NETNS_UNSHARE = 1, /* unshare(CLONE_NEWNET): the caller moved in */
	TAPIO_NETNS_CLONE = 2,   /* clone/clone3(CLONE_NEWNET): a child born in it */
};

/* network.namespace.create: a task is in a network namespace its parent
 * (clone) or itself a moment ago (unshare) was not in. The header is the
 * task that made it (the parent for clone). */
struct tapio_netns_create {
	struct tapio_event_header hdr;
	__u64 netns_ino;        /* the new namespace's inode (ns.inum) */
	__u64 parent_netns_ino; /* the namespace the task was in before */
	__u32 via;              /* enum tapio_netns_via */
	__u32 child_pid;        /* clone: the child (tgid, in it); unshare: 0 */
};

/* The CNI bin directory the kernel matches exec paths against, with its
 * trailing '/' (a .rodata global set by userspace before load). */
#define TAPIO_CNI_DIR_LEN 128
/* Environment bytes copied per CNI plugin exec. Runtimes (libcni) append
 * the CNI_* variables after their own environment, so a longer one is
 * copied from its end (flagged). */
#define TAPIO_CNI_ENV_LEN 8192

/* Bits of tapio_cni_exec.flags. */
enum tapio_cni_flags {
	/* filename did not fit in TAPIO_PATH_LEN. */
	TAPIO_CNI_FILENAME_TRUNCATED = 1,
	/* The environment was longer than TAPIO_CNI_ENV_LEN: env holds its
	 * last TAPIO_CNI_ENV_LEN bytes (the first variable may be cut). */
	TAPIO_CNI_ENV_TAIL = 2,
	/* The environment could not be read; env_len is 0. */
	TAPIO_CNI_ENV_UNREADABLE = 4,
};

/* cni.plugin.exec: a program under the CNI bin directory was executed.
 * The header is the new image (the plugin). */
struct tapio_cni_exec {
	struct tapio_event_header hdr;
	__u64 netns_ino;    /* the plugin's own network namespace at exec */
	__u32 flags;        /* enum tapio_cni_flags bits */
	__u32 env_len;      /* bytes used in env */
	__u32 env_total;    /* the whole environment's size */
	__u16 filename_len; /* bytes used in filename, without the NUL */
	__u16 _pad0;
	char filename[TAPIO_PATH_LEN]; /* path given to execve */
	char env[TAPIO_CNI_ENV_LEN];   /* environment, NUL-separated NAME=value */
};

#pragma clang diagnostic pop

#endif /* TAPIO_EVENTS_H */
