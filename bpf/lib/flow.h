/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * A classified frame: its fields, its addresses and the flow-opener test.
 * The parser records where the IP header is and leaves the addresses in
 * the packet, so a frame to no frontend reads only the destination,
 * straight into the lookup key.
 */
#ifndef ZH_LIB_FLOW_H
#define ZH_LIB_FLOW_H

#include "lib/common.h"

/* Address family values of struct zh_flow, equal to the socket API's. */
#define ZH_AF_INET		2
#define ZH_AF_INET6		10

/* TCP flag bits in byte 13 of the TCP header. */
#define ZH_TCP_FLAGS_BYTE	13
#define ZH_TCP_SYN		0x02
#define ZH_TCP_RST		0x04
#define ZH_TCP_ACK		0x10

/*
 * Offsets count from the first byte of the frame. l3 points into the
 * linear data, so it is valid until a helper that moves packet data, and
 * the verifier rejects a use after one. No path calls such a helper
 * between the parse and the last use.
 *
 * The transport header's fields are copied instead of kept as a pointer
 * like l3, because its position depends on the IPv6 extension headers. A
 * pointer for each sequence of them kept the verifier from pruning, and
 * it processed seven to ten times as many instructions.
 */
struct zh_flow {
	const void	*l3;		/* struct iphdr or struct ipv6hdr */
	__u32		l3_end;		/* datagram end, by its length field */
	__be16		src_port;
	__be16		dst_port;
	__u16		l3_offset;
	__u16		l4_offset;
	__u8		family;		/* ZH_AF_INET or ZH_AF_INET6 */
	__u8		l4_proto;	/* IPPROTO_TCP or IPPROTO_UDP */
	__u8		tcp_flags;	/* ZH_TCP_* bits, 0 for UDP */
	__u8		is_fragment;	/* first fragment of a datagram */
};

/* Tells whether flow may open a connection: a TCP SYN or any UDP datagram. */
static __always_inline bool zh_flow_opens(const struct zh_flow *flow)
{
	if (flow->l4_proto == IPPROTO_UDP)
		return true;
	return (flow->tcp_flags & (ZH_TCP_SYN | ZH_TCP_ACK | ZH_TCP_RST)) ==
	       ZH_TCP_SYN;
}

/* Writes an IPv4 address as ::ffff:a.b.c.d. addr must be 4-byte aligned. */
static __always_inline void zh_addr_map_ipv4(__u8 *addr, __be32 ipv4)
{
	__u32 *words = (__u32 *)addr;

	words[0] = 0;
	words[1] = 0;
	words[2] = bpf_htonl(0x0000ffff);
	words[3] = ipv4;
}

/*
 * Copies flow's source and destination addresses, IPv4-mapped for IPv4.
 * Both buffers must be 4-byte aligned.
 */
static __always_inline void zh_flow_addrs(const struct zh_flow *flow,
					  __u8 *src, __u8 *dst)
{
	const struct ipv6hdr *ip6h = flow->l3;
	const struct iphdr *iph = flow->l3;

	if (flow->family == ZH_AF_INET) {
		zh_addr_map_ipv4(src, iph->saddr);
		zh_addr_map_ipv4(dst, iph->daddr);
		return;
	}

	/* As structs: a memcpy to a byte buffer would copy byte by byte. */
	*(struct in6_addr *)src = ip6h->saddr;
	*(struct in6_addr *)dst = ip6h->daddr;
}

#endif /* ZH_LIB_FLOW_H */
