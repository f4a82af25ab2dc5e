// SPDX-License-Identifier: GPL-2.0-only
/*
 * etcd: how long its write-ahead log takes to reach the disk. etcd calls
 * fdatasync on the WAL's tail segment (a `*.wal` file) for every batch of
 * raft entries it persists, and waits for it before it acknowledges: the
 * latency etcd operators watch most (etcd's own
 * etcd_disk_wal_fsync_duration_seconds measures the same call from Go).
 *
 * Hooks: the fdatasync and fsync syscall tracepoints (no kprobes needed).
 * Entry: is the caller a watched process (comm in tapio_etcd_comms) and is
 * the descriptor a *.wal file? Then its entry time is kept by thread. Exit:
 * the call's time goes into a per-CPU log2 histogram, and a call slower
 * than tapio_slow_ns also becomes a ring-buffer record (a span). Other
 * processes' syncs cost a comm comparison; etcd's bbolt database syncs
 * (member/snap/db) fail the name check.
 */
#include "tapio_bpf.h"

TAPIO_PROBE_MAPS();

typedef struct tapio_etcd_fsync tapio_etcd_fsync;
TAPIO_ABI_BTF(tapio_etcd_fsync);

/* Set by userspace before load (RingConfig::sampled): the span threshold.
 * The threshold global is unused (every sync is counted) but every
 * sampling object declares it. */
const volatile __u64 tapio_slow_ns = 100000000;
const volatile __u32 tapio_sample_threshold = 0xffffffff;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, TAPIO_ETCD_MAX_COMMS);
	__type(key, __u32);
	__type(value, struct tapio_etcd_comm);
} tapio_etcd_comms SEC(".maps");

/* Every WAL sync's time (tapio.etcd.wal_fsync.duration). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tapio_hist);
} tapio_etcd_wal_hist SEC(".maps");

struct inflight {
	__u64 start_ns;
	__s32 fd;
	__u32 syscall;
	char file[TAPIO_ETCD_FILE_LEN];
};

/* Syncs in progress, by thread (pid_tgid). LRU: a thread that dies in
 * the call leaves nothing behind for long. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, struct inflight);
} tapio_etcd_inflight SEC(".maps");

/* Scratch for the entry (too big for a comfortable stack). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct inflight);
} tapio_etcd_scratch SEC(".maps");

static __always_inline int watched(void)
{
	char comm[TAPIO_COMM_LEN] = {};
	bpf_get_current_comm(comm, sizeof(comm));
	__u64 c0 = *(__u64 *)&comm[0], c1 = *(__u64 *)&comm[8];
#pragma unroll
	for (__u32 i = 0; i < TAPIO_ETCD_MAX_COMMS; i++) {
		__u32 k = i;
		struct tapio_etcd_comm *w = bpf_map_lookup_elem(&tapio_etcd_comms, &k);
		if (!w)
			return 0;
		__u64 w0 = *(__u64 *)&w->comm[0], w1 = *(__u64 *)&w->comm[8];
		if (!w0)
			return 0;
		if (w0 == c0 && w1 == c1)
			return 1;
	}
	return 0;
}

/* The name of the caller's file `fd` into `name`; its length with the
 * NUL, or <= 0. */
static __always_inline long fd_name(int fd, char *name)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt || fd < 0 || (unsigned int)fd >= BPF_CORE_READ(fdt, max_fds))
		return -1;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = 0;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) || !f)
		return -1;
	const unsigned char *n = BPF_CORE_READ(f, f_path.dentry, d_name.name);
	return bpf_probe_read_kernel_str(name, TAPIO_ETCD_FILE_LEN, n);
}

static __always_inline int enter(struct sys_enter_ctx *ctx, __u32 syscall)
{
	if (!watched())
		return 0;
	__u32 zero = 0;
	struct inflight *in = bpf_map_lookup_elem(&tapio_etcd_scratch, &zero);
	if (!in)
		return 0;
	int fd = (int)ctx->args[0];
	long len = fd_name(fd, in->file);
	/* "x.wal" and its NUL: at least 6 bytes. */
	if (len < 6 || len > TAPIO_ETCD_FILE_LEN)
		return 0;
	__u32 e = (len - 5) & (TAPIO_ETCD_FILE_LEN - 1);
	if (e + 4 > TAPIO_ETCD_FILE_LEN - 1)
		return 0;
	if (in->file[e] != '.' || in->file[e + 1] != 'w' || in->file[e + 2] != 'a' ||
	    in->file[e + 3] != 'l')
		return 0;
	in->fd = fd;
	in->syscall = syscall;
	in->start_ns = bpf_ktime_get_boot_ns();
	__u64 id = bpf_get_current_pid_tgid();
	if (bpf_map_update_elem(&tapio_etcd_inflight, &id, in, BPF_ANY))
		tapio_count_lost(&tapio_lost, TAPIO_LOST_MAP_FULL);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_fdatasync")
int tapio_etcd_fdatasync_enter(struct sys_enter_ctx *ctx)
{
	return enter(ctx, 0);
}

SEC("tracepoint/syscalls/sys_enter_fsync")
int tapio_etcd_fsync_enter(struct sys_enter_ctx *ctx)
{
	return enter(ctx, 1);
}

/* Both exits. */
SEC("tracepoint/syscalls/sys_exit_fdatasync")
int tapio_etcd_sync_exit(struct sys_exit_ctx *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct inflight *in = bpf_map_lookup_elem(&tapio_etcd_inflight, &id);
	if (!in)
		return 0;
	__u64 now = bpf_ktime_get_boot_ns();
	__u64 ns = now - in->start_ns;
	__u32 zero = 0;
	struct tapio_hist *h = bpf_map_lookup_elem(&tapio_etcd_wal_hist, &zero);
	if (h) {
		__u32 b = log2_bucket(ns);
		if (b < TAPIO_HIST_BUCKETS)
			h->buckets[b] += 1;
		h->sum_ns += ns;
	}
	if (ns >= tapio_slow_ns) {
		struct tapio_etcd_fsync *e =
			tapio_reserve(&tapio_events, &tapio_lost, sizeof(*e));
		if (e) {
			tapio_fill_header_current(&e->hdr, TAPIO_EVENT_ETCD_WAL_FSYNC);
			e->hdr.ts_ns = now;
			e->start_ns = in->start_ns;
			e->duration_ns = ns;
			e->ret = ctx->ret;
			e->fd = in->fd;
			e->syscall = in->syscall;
			__builtin_memcpy(e->file, in->file, sizeof(e->file));
			tapio_submit(&tapio_events, e);
		}
	}
	bpf_map_delete_elem(&tapio_etcd_inflight, &id);
	return 0;
}

/*
 * Request latency on etcd's client port. etcd's client API is gRPC:
 * HTTP/2 frames on plain TCP (h2c; TLS connections are not readable here
 * and are left alone). A watched process's accept4 on one of
 * tapio_etcd_ports starts following the connection; its read(2)s and
 * write(2)s (what Go's net package uses) are then cut into HTTP/2 frame
 * headers, carrying the header across calls when a frame or a header is
 * split between two. A request starts at the read that brought its
 * HEADERS frame (client stream ids are odd) and ends at the write that
 * carried the server's END_STREAM (or a RST_STREAM) on that stream. A
 * stream the server answers before the client half-closed (Watch,
 * LeaseKeepAlive: bidirectional streams that live as long as their
 * client) is dropped at its first response frame so that only
 * request/response calls are timed. close(2) forgets the connection.
 */

#define H2_PREFACE_LEN 24
#define H2_HDR 9
#define H2_DATA 0
#define H2_HEADERS 1
#define H2_RST_STREAM 3
#define H2_END_STREAM 1
/* Frame headers one call is cut into at most; past that the connection
 * is lost (counted as a read error) rather than misread. */
#define H2_MAX_FRAMES 1024

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, TAPIO_ETCD_MAX_PORTS);
	__type(key, __u32);
	__type(value, __u32);
} tapio_etcd_ports SEC(".maps");

/* Every request's time (tapio.etcd.request.duration). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tapio_hist);
} tapio_etcd_req_hist SEC(".maps");

/* Where one direction of a connection is in the frame sequence. */
struct h2_dir {
	__u32 skip; /* bytes of the current frame (or the preface) still to come */
	__u32 have; /* bytes of a split frame header kept in hdr */
	__u8 hdr[H2_HDR + 7];
};

struct conn_key {
	__u32 tgid;
	__s32 fd;
};

struct conn {
	__u32 gen;      /* tells a reused fd's streams from the old ones' */
	__u32 preface;  /* the client preface is not checked yet */
	struct h2_dir rx, tx;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct conn_key);
	__type(value, struct conn);
} tapio_etcd_conns SEC(".maps");

struct stream_key {
	__u32 tgid;
	__s32 fd;
	__u32 gen;
	__u32 id;
};

struct stream {
	__u64 start_ns;
	__u32 client_done; /* the client's END_STREAM arrived */
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct stream_key);
	__type(value, struct stream);
} tapio_etcd_streams SEC(".maps");

/* A read or write on a followed connection, by thread, enter to exit. */
struct io {
	__u64 buf;
	__s32 fd;
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct io);
} tapio_etcd_io SEC(".maps");

static __always_inline int client_port(__u16 port)
{
#pragma unroll
	for (__u32 i = 0; i < TAPIO_ETCD_MAX_PORTS; i++) {
		__u32 k = i;
		__u32 *p = bpf_map_lookup_elem(&tapio_etcd_ports, &k);
		if (!p || !*p)
			return 0;
		if (*p == port)
			return 1;
	}
	return 0;
}

/* The local TCP port of the caller's socket `fd`, or 0. */
static __always_inline __u16 sock_port(int fd)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt || fd < 0 || (unsigned int)fd >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = 0;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) || !f)
		return 0;
	umode_t mode = BPF_CORE_READ(f, f_inode, i_mode);
	if ((mode & 00170000) != 0140000) /* S_IFSOCK */
		return 0;
	struct socket *sock = BPF_CORE_READ(f, private_data);
	if (!sock)
		return 0;
	return BPF_CORE_READ(sock, sk, __sk_common.skc_num);
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int tapio_etcd_accept_exit(struct sys_exit_ctx *ctx)
{
	if (ctx->ret < 0 || !watched())
		return 0;
	int fd = (int)ctx->ret;
	if (!client_port(sock_port(fd)))
		return 0;
	struct conn_key k = { .tgid = bpf_get_current_pid_tgid() >> 32, .fd = fd };
	struct conn c = {};
	c.gen = (__u32)bpf_ktime_get_ns();
	c.preface = 1;
	c.rx.skip = H2_PREFACE_LEN;
	if (bpf_map_update_elem(&tapio_etcd_conns, &k, &c, BPF_ANY))
		tapio_count_lost(&tapio_lost, TAPIO_LOST_MAP_FULL);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_close")
int tapio_etcd_close(struct sys_enter_ctx *ctx)
{
	struct conn_key k = { .tgid = bpf_get_current_pid_tgid() >> 32,
			      .fd = (int)ctx->args[0] };
	bpf_map_delete_elem(&tapio_etcd_conns, &k);
	return 0;
}

/* Both reads and writes (attached to sys_enter_write too): remember the
 * buffer when the fd is followed. */
SEC("tracepoint/syscalls/sys_enter_read")
int tapio_etcd_io_enter(struct sys_enter_ctx *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct conn_key k = { .tgid = id >> 32, .fd = (int)ctx->args[0] };
	if (!bpf_map_lookup_elem(&tapio_etcd_conns, &k))
		return 0;
	struct io io = { .buf = ctx->args[1], .fd = k.fd };
	if (bpf_map_update_elem(&tapio_etcd_io, &id, &io, BPF_ANY))
		tapio_count_lost(&tapio_lost, TAPIO_LOST_MAP_FULL);
	return 0;
}

struct walk {
	const __u8 *buf;
	__u64 now;
	struct stream_key sk;
	__u32 len;  /* bytes the call moved */
	__u32 off;  /* next unread byte */
	__u32 tx;   /* a write (server to client) */
	__u32 done;
	__u32 lost;
	struct h2_dir d;
};

static __always_inline void record(__u64 ns)
{
	__u32 zero = 0;
	struct tapio_hist *h = bpf_map_lookup_elem(&tapio_etcd_req_hist, &zero);
	if (!h)
		return;
	__u32 b = log2_bucket(ns);
	if (b < TAPIO_HIST_BUCKETS)
		h->buckets[b] += 1;
	h->sum_ns += ns;
}

/* One complete frame header in w->d.hdr: follow its stream, skip its body. */
static __always_inline void frame(struct walk *w)
{
	__u8 *h = w->d.hdr;
	__u32 len = ((__u32)h[0] << 16) | ((__u32)h[1] << 8) | h[2];
	__u8 type = h[3], flags = h[4];
	__u32 sid = (((__u32)h[5] & 0x7f) << 24) | ((__u32)h[6] << 16) | ((__u32)h[7] << 8) | h[8];
	w->d.skip = len;
	w->d.have = 0;
	if (!(sid & 1) || (type != H2_DATA && type != H2_HEADERS && type != H2_RST_STREAM))
		return;
	w->sk.id = sid;
	struct stream *s = bpf_map_lookup_elem(&tapio_etcd_streams, &w->sk);
	if (!w->tx) {
		if (type == H2_RST_STREAM) {
			/* The client gave up on it. */
			if (s)
				bpf_map_delete_elem(&tapio_etcd_streams, &w->sk);
			return;
		}
		if (!s) {
			if (type != H2_HEADERS)
				return;
			struct stream n = { .start_ns = w->now,
					    .client_done = flags & H2_END_STREAM };
			if (bpf_map_update_elem(&tapio_etcd_streams, &w->sk, &n, BPF_NOEXIST))
				tapio_count_lost(&tapio_lost, TAPIO_LOST_MAP_FULL);
			return;
		}
		if (flags & H2_END_STREAM)
			s->client_done = 1;
		return;
	}
	if (!s)
		return;
	if (type == H2_RST_STREAM || (s->client_done && (flags & H2_END_STREAM))) {
		record(w->now - s->start_ns);
		bpf_map_delete_elem(&tapio_etcd_streams, &w->sk);
	} else if (!s->client_done) {
		/* Answered while the client still sends: a long-lived stream. */
		bpf_map_delete_elem(&tapio_etcd_streams, &w->sk);
	}
}

static long walk_step(__u64 i, void *arg)
{
	struct walk *w = arg;
	if (w->off >= w->len)
		return 1;
	__u32 left = w->len - w->off;
	if (w->d.skip) {
		__u32 s = w->d.skip < left ? w->d.skip : left;
		w->d.skip -= s;
		w->off += s;
		return 0;
	}
	/* A frame header starts (or continues) at off. */
	__u32 have = w->d.have;
	if (have >= H2_HDR) {
		w->lost = 1;
		return 1;
	}
	__u32 need = H2_HDR - have;
	__u32 n = need < left ? need : left;
	/* n is 1..9; tmp is 16 so that the asm-masked size (6.1's verifier
	 * loses a plain bound here) fits it. */
	__u8 tmp[16] = {};
	if (bpf_probe_read_user(tmp, TAPIO_LEN_1_TO(n, 16), w->buf + w->off)) {
		w->lost = 1;
		return 1;
	}
#pragma unroll
	for (__u32 j = 0; j < H2_HDR; j++) {
		if (j < n)
			w->d.hdr[(have + j) & 15] = tmp[j];
	}
	w->d.have = have + n;
	w->off += n;
	if (w->d.have == H2_HDR)
		frame(w);
	return 0;
}

/* Cut one call's bytes into frames; the state goes back into the
 * connection. */
static __always_inline void walk(struct conn *c, struct conn_key *k, __u64 buf, __u32 len,
				 __u32 tx)
{
	struct walk w = {};
	w.buf = (const __u8 *)buf;
	w.now = bpf_ktime_get_boot_ns();
	w.sk.tgid = k->tgid;
	w.sk.fd = k->fd;
	w.sk.gen = c->gen;
	w.len = len;
	w.tx = tx;
	w.d = tx ? c->tx : c->rx;
	long loops = bpf_loop(H2_MAX_FRAMES * 2 + 2, walk_step, &w, 0);
	if (w.lost || (loops >= H2_MAX_FRAMES * 2 + 2 && w.off < w.len)) {
		tapio_count_lost(&tapio_lost, TAPIO_LOST_READ_ERROR);
		bpf_map_delete_elem(&tapio_etcd_conns, k);
		return;
	}
	if (tx)
		c->tx = w.d;
	else
		c->rx = w.d;
}

static __always_inline int io_exit(struct sys_exit_ctx *ctx, __u32 tx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct io *io = bpf_map_lookup_elem(&tapio_etcd_io, &id);
	if (!io)
		return 0;
	__u64 buf = io->buf;
	struct conn_key k = { .tgid = id >> 32, .fd = io->fd };
	bpf_map_delete_elem(&tapio_etcd_io, &id);
	if (ctx->ret <= 0)
		return 0;
	struct conn *c = bpf_map_lookup_elem(&tapio_etcd_conns, &k);
	if (!c)
		return 0;
	if (!tx && c->preface) {
		/* h2c starts with "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"; anything
		 * else (HTTP/1, TLS) is not followed. */
		char p[4] = {};
		if (ctx->ret < 4 || bpf_probe_read_user(p, 4, (void *)buf) || p[0] != 'P' ||
		    p[1] != 'R' || p[2] != 'I' || p[3] != ' ') {
			bpf_map_delete_elem(&tapio_etcd_conns, &k);
			return 0;
		}
		c->preface = 0;
	}
	walk(c, &k, buf, (__u32)ctx->ret, tx);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_read")
int tapio_etcd_read_exit(struct sys_exit_ctx *ctx)
{
	return io_exit(ctx, 0);
}

SEC("tracepoint/syscalls/sys_exit_write")
int tapio_etcd_write_exit(struct sys_exit_ctx *ctx)
{
	return io_exit(ctx, 1);
}
