/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * TLS ClientHello reading shared by tc.bpf.c and dns.bpf.c (both read TCP
 * payload with bpf_skb_load_bytes): where the server_name is, and the
 * hash a configured name is looked up by. Userspace hashes configured
 * names the same way (probes::encrypted_dns::name_hash).
 */
#ifndef TAPIO_TLS_H
#define TAPIO_TLS_H

/* TLS extensions walked looking for server_name. */
#define TAPIO_TLS_MAX_EXT 24
/* Longest server name hashed; longer names match nothing (userspace
 * refuses longer configured names). */
#define TAPIO_TLS_NAME_MAX 128

/* A TLS handshake record whose first message is a ClientHello. */
static __always_inline int tapio_tls_client_hello(const __u8 *b, __u32 n)
{
	return n >= 6 && b[0] == 0x16 && b[1] == 0x03 && b[2] <= 0x04 && b[5] == 0x01;
}

/* Find the server_name of the ClientHello record at `off` (the segment's
 * payload ends at `end`): 0 with the name's offset and length, -1 when
 * the name is absent or not wholly in this segment. */
static __always_inline int tapio_tls_sni(struct __sk_buff *skb, __u32 off, __u32 end,
					 __u32 *name_off, __u32 *name_len)
{
	__u8 b[4];
	/* record(5) + handshake header(4) + version(2) + random(32) */
	__u32 p = off + 5 + 4 + 2 + 32;
	if (bpf_skb_load_bytes(skb, p, b, 1))
		return -1;
	p += 1 + b[0]; /* session id */
	if (bpf_skb_load_bytes(skb, p, b, 2))
		return -1;
	p += 2 + (((__u32)b[0] << 8) | b[1]); /* cipher suites */
	if (bpf_skb_load_bytes(skb, p, b, 1))
		return -1;
	p += 1 + b[0]; /* compression methods */
	if (bpf_skb_load_bytes(skb, p, b, 2))
		return -1;
	p += 2;
	for (int i = 0; i < TAPIO_TLS_MAX_EXT; i++) {
		if (p + 4 > end)
			return -1;
		if (bpf_skb_load_bytes(skb, p, b, 4))
			return -1;
		__u32 type = ((__u32)b[0] << 8) | b[1];
		__u32 len = ((__u32)b[2] << 8) | b[3];
		p += 4;
		if (type == 0) {
			/* list length(2), name type(1), name length(2), name */
			if (bpf_skb_load_bytes(skb, p + 3, b, 2))
				return -1;
			__u32 n = ((__u32)b[0] << 8) | b[1];
			if (n == 0 || p + 5 + n > end)
				return -1;
			*name_off = p + 5;
			*name_len = n;
			return 0;
		}
		p += len;
	}
	return -1;
}

/* FNV-1a (64 bits) of the name, ASCII letters lowercased: DNS names
 * compare case-insensitively. */
static __always_inline __u64 tapio_tls_name_hash(const __u8 *name, __u32 n)
{
	__u64 h = 0xcbf29ce484222325ULL;
	for (int i = 0; i < TAPIO_TLS_NAME_MAX; i++) {
		if (i >= n)
			break;
		__u8 c = name[i];
		if (c >= 'A' && c <= 'Z')
			c += 'a' - 'A';
		h ^= c;
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* The server name of the ClientHello at `off`, hashed, read through
 * `scratch` (TAPIO_TLS_NAME_MAX bytes, per-CPU): 0 when there is none to
 * hash. */
static __always_inline __u64 tapio_tls_sni_hash(struct __sk_buff *skb, __u32 off, __u32 end,
						__u8 *scratch)
{
	__u32 no = 0, nl = 0;
	if (tapio_tls_sni(skb, off, end, &no, &nl) || nl > TAPIO_TLS_NAME_MAX)
		return 0;
	if (bpf_skb_load_bytes(skb, no, scratch, TAPIO_LEN_1_TO(nl, TAPIO_TLS_NAME_MAX)))
		return 0;
	return tapio_tls_name_hash(scratch, nl);
}

#endif
