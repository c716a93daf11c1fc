/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Frame parser shared by every hook. It reads headers with direct packet
 * access between data and data_end, so headers that continue past the
 * linear part of a frame (XDP multi-buffer, non-linear skb) end the parse
 * with ZH_PARSE_SHORT. Every loop has a constant bound.
 */
#ifndef ZH_LIB_PARSE_H
#define ZH_LIB_PARSE_H

#include "lib/flow.h"

/* IPv4 frag_off bits, host order. */
#define ZH_IP_MF		0x2000
#define ZH_IP_OFFSET		0x1fff

/* Bits of frag_off in the IPv6 fragment header, host order. */
#define ZH_IP6_OFFSET		0xfff8
#define ZH_IP6_MF		0x0001

enum zh_parse_status {
	ZH_PARSE_OK,		/* TCP or UDP with both ports: classified */
	ZH_PARSE_SKIP,		/* not classified, however long the frame is */
	ZH_PARSE_SHORT,		/* a header runs past data_end */
	ZH_PARSE_PARTIAL,	/* classified, datagram runs past data_end */
};

struct zh_vlan_hdr {
	__be16	tci;
	__be16	encap_proto;
};

struct zh_ipv6_frag_hdr {
	__u8	nexthdr;
	__u8	reserved;
	__be16	frag_off;
	__be32	identification;
};

/* Read position in the linear part of a frame. */
struct zh_cursor {
	void	*pos;
	void	*end;		/* data_end */
	__u32	offset;		/* of pos from the first byte of the frame */
};

/*
 * Checks that len bytes at the cursor lie inside the linear data. len is
 * a constant at every call, which lets the verifier carry the checked
 * range over to the accesses that follow.
 */
static __always_inline enum zh_parse_status
zh_cursor_check(const struct zh_cursor *cur, __u32 len)
{
	if (cur->pos + len > cur->end)
		return ZH_PARSE_SHORT;
	return ZH_PARSE_OK;
}

static __always_inline void zh_cursor_advance(struct zh_cursor *cur, __u32 len)
{
	cur->pos += len;
	cur->offset += len;
}

/* Skips Ethernet and up to ZH_MAX_VLAN_TAGS tags and stores the ethertype. */
static __always_inline enum zh_parse_status
zh_parse_eth(struct zh_cursor *cur, __be16 *proto)
{
	struct ethhdr *eth = cur->pos;
	enum zh_parse_status status;
	int i;

	status = zh_cursor_check(cur, sizeof(*eth));
	if (status != ZH_PARSE_OK)
		return status;
	*proto = eth->h_proto;
	zh_cursor_advance(cur, sizeof(*eth));

#pragma unroll
	for (i = 0; i < ZH_MAX_VLAN_TAGS; i++) {
		struct zh_vlan_hdr *vlan = cur->pos;

		if (*proto != bpf_htons(ETH_P_8021Q) &&
		    *proto != bpf_htons(ETH_P_8021AD))
			return ZH_PARSE_OK;
		status = zh_cursor_check(cur, sizeof(*vlan));
		if (status != ZH_PARSE_OK)
			return status;
		*proto = vlan->encap_proto;
		zh_cursor_advance(cur, sizeof(*vlan));
	}

	/* A tag left after the last allowed one makes the stack too deep. */
	if (*proto == bpf_htons(ETH_P_8021Q) ||
	    *proto == bpf_htons(ETH_P_8021AD))
		return ZH_PARSE_SKIP;
	return ZH_PARSE_OK;
}

/*
 * Parses the IPv4 header and options. tot_len sets the datagram's end.
 * NOTE: a GRO packet above 64 KiB (BIG TCP) has tot_len 0, so it is not
 * classified and passes uncounted.
 */
static __always_inline enum zh_parse_status
zh_parse_ipv4(struct zh_cursor *cur, struct zh_flow *flow)
{
	struct iphdr *iph = cur->pos;
	enum zh_parse_status status;
	__u32 hdr_len, tot_len;
	__u16 frag;

	status = zh_cursor_check(cur, sizeof(*iph));
	if (status != ZH_PARSE_OK)
		return status;
	if (iph->version != 4 || iph->ihl < 5)
		return ZH_PARSE_SKIP;
	hdr_len = iph->ihl * 4;
	tot_len = bpf_ntohs(iph->tot_len);
	if (tot_len < hdr_len)
		return ZH_PARSE_SKIP;
	flow->l3_end = cur->offset + tot_len;

	/* The options must be linear too, as the TCP or UDP header follows. */
	if (cur->pos + hdr_len > cur->end)
		return ZH_PARSE_SHORT;

	/* Only the fragment at offset 0 carries the ports. */
	frag = bpf_ntohs(iph->frag_off);
	if (frag & ZH_IP_OFFSET)
		return ZH_PARSE_SKIP;
	flow->is_fragment = !!(frag & ZH_IP_MF);

	flow->l3 = iph;
	flow->family = ZH_AF_INET;
	flow->l4_proto = iph->protocol;
	zh_cursor_advance(cur, hdr_len);
	return ZH_PARSE_OK;
}

/*
 * Skips up to ZH_MAX_IPV6_EXT_HDRS extension headers and stores the
 * upper-layer protocol in flow->l4_proto. A fragment header with a
 * non-zero offset ends the parse, because only the first fragment carries
 * the ports. One with offset 0 and the M flag clear (an atomic fragment,
 * RFC 6946) contains a whole datagram, so only the M flag marks a fragment.
 */
static __always_inline enum zh_parse_status
zh_skip_ipv6_ext(struct zh_cursor *cur, struct zh_flow *flow, __u8 nexthdr)
{
	enum zh_parse_status status;
	int i;

#pragma unroll
	for (i = 0; i < ZH_MAX_IPV6_EXT_HDRS; i++) {
		struct ipv6_opt_hdr *opt = cur->pos;
		struct zh_ipv6_frag_hdr *frag = cur->pos;
		__u32 len;

		if (nexthdr == IPPROTO_TCP || nexthdr == IPPROTO_UDP)
			break;

		/* Every extension header is at least 8 bytes long. */
		status = zh_cursor_check(cur, 8);
		if (status != ZH_PARSE_OK)
			return status;

		/*
		 * The verifier explores every sequence of header kinds, so
		 * this switch keeps one path per kind. A chain of ifs here
		 * more than doubled the instructions it processed.
		 */
		switch (nexthdr) {
		case IPPROTO_HOPOPTS:
		case IPPROTO_ROUTING:
		case IPPROTO_DSTOPTS:
			len = (opt->hdrlen + 1) * 8;
			break;
		case IPPROTO_AH:
			len = (opt->hdrlen + 2) * 4;
			break;
		case IPPROTO_FRAGMENT:
			if (frag->frag_off & bpf_htons(ZH_IP6_OFFSET))
				return ZH_PARSE_SKIP;
			flow->is_fragment |=
				bpf_ntohs(frag->frag_off) & ZH_IP6_MF;
			len = sizeof(*frag);
			break;
		default:
			return ZH_PARSE_SKIP;
		}
		nexthdr = opt->nexthdr;
		zh_cursor_advance(cur, len);
	}

	if (nexthdr != IPPROTO_TCP && nexthdr != IPPROTO_UDP)
		return ZH_PARSE_SKIP;
	flow->l4_proto = nexthdr;
	return ZH_PARSE_OK;
}

/*
 * Parses the IPv6 header and extension headers. payload_len sets the
 * datagram's end, so a jumbogram (payload_len 0) is not classified.
 */
static __always_inline enum zh_parse_status
zh_parse_ipv6(struct zh_cursor *cur, struct zh_flow *flow)
{
	struct ipv6hdr *ip6h = cur->pos;
	enum zh_parse_status status;

	status = zh_cursor_check(cur, sizeof(*ip6h));
	if (status != ZH_PARSE_OK)
		return status;
	if (ip6h->version != 6)
		return ZH_PARSE_SKIP;
	flow->l3_end = cur->offset + sizeof(*ip6h) +
		       bpf_ntohs(ip6h->payload_len);

	flow->l3 = ip6h;
	flow->family = ZH_AF_INET6;
	zh_cursor_advance(cur, sizeof(*ip6h));
	return zh_skip_ipv6_ext(cur, flow, ip6h->nexthdr);
}

static __always_inline enum zh_parse_status
zh_parse_l4(struct zh_cursor *cur, struct zh_flow *flow)
{
	enum zh_parse_status status;

	if (flow->l4_proto == IPPROTO_TCP) {
		struct tcphdr *tcph = cur->pos;

		status = zh_cursor_check(cur, sizeof(*tcph));
		if (status != ZH_PARSE_OK)
			return status;

		/*
		 * The header with its options must fit the datagram, which
		 * also proves that every header before it does. The options
		 * need not be in the linear data, because nothing reads them.
		 */
		if (tcph->doff < 5 ||
		    cur->offset + tcph->doff * 4 > flow->l3_end)
			return ZH_PARSE_SKIP;

		flow->src_port = tcph->source;
		flow->dst_port = tcph->dest;
		flow->tcp_flags = ((__u8 *)tcph)[ZH_TCP_FLAGS_BYTE];
		return ZH_PARSE_OK;
	}

	if (flow->l4_proto == IPPROTO_UDP) {
		struct udphdr *udph = cur->pos;

		status = zh_cursor_check(cur, sizeof(*udph));
		if (status != ZH_PARSE_OK)
			return status;
		if (cur->offset + sizeof(*udph) > flow->l3_end)
			return ZH_PARSE_SKIP;
		flow->src_port = udph->source;
		flow->dst_port = udph->dest;
		flow->tcp_flags = 0;
		return ZH_PARSE_OK;
	}

	return ZH_PARSE_SKIP;
}

/* Headers that zh_parse_fast reads: Ethernet, IPv4 and TCP, no options. */
#define ZH_FAST_HDRS_LEN						\
	(sizeof(struct ethhdr) + sizeof(struct iphdr) + sizeof(struct tcphdr))

/*
 * Classifies the most common frame, untagged IPv4 without options carrying
 * TCP or UDP, at constant offsets: one bounds check covers every header,
 * and no load waits for a header length read before it. Returns false for
 * any other frame, which the general parser then reads. For a frame it
 * classifies, status and flow are what the general parser would produce.
 */
static __always_inline bool zh_parse_fast(void *data, void *data_end,
					  struct zh_flow *flow,
					  enum zh_parse_status *status)
{
	struct iphdr *iph = data + sizeof(struct ethhdr);
	struct tcphdr *tcph = (void *)(iph + 1);
	__u32 tot_len, l4_len;
	__be16 frag_off;

	/* Shorter frames, such as UDP with a short payload, go the general way. */
	if (data + ZH_FAST_HDRS_LEN > data_end)
		return false;

	/* struct ethhdr is packed, which would read h_proto byte by byte. */
	if (*(__be16 *)(data + offsetof(struct ethhdr, h_proto)) !=
	    bpf_htons(ETH_P_IP))
		return false;

	/* A first byte of 0x45 is version 4 and ihl 5, so no options. */
	if (*(__u8 *)iph != 0x45)
		return false;
	frag_off = iph->frag_off;
	if (frag_off & bpf_htons(ZH_IP_OFFSET))
		return false;

	/* UDP keeps its ports where TCP does. */
	if (iph->protocol == IPPROTO_TCP) {
		l4_len = tcph->doff * 4;
		if (l4_len < sizeof(*tcph))
			return false;
		flow->tcp_flags = ((__u8 *)tcph)[ZH_TCP_FLAGS_BYTE];
	} else if (iph->protocol == IPPROTO_UDP) {
		l4_len = sizeof(struct udphdr);
		flow->tcp_flags = 0;
	} else {
		return false;
	}

	/* This also rejects a tot_len shorter than the IPv4 header. */
	tot_len = bpf_ntohs(iph->tot_len);
	if (sizeof(*iph) + l4_len > tot_len)
		return false;

	flow->l3 = iph;
	flow->l3_end = sizeof(struct ethhdr) + tot_len;
	flow->src_port = tcph->source;
	flow->dst_port = tcph->dest;
	flow->l3_offset = sizeof(struct ethhdr);
	flow->l4_offset = sizeof(struct ethhdr) + sizeof(*iph);
	flow->family = ZH_AF_INET;
	flow->l4_proto = iph->protocol;
	flow->is_fragment = !!(frag_off & bpf_htons(ZH_IP_MF));

	*status = ZH_PARSE_OK;
	if (data + flow->l3_end > data_end)
		*status = ZH_PARSE_PARTIAL;
	return true;
}

/*
 * Classifies the frame between data and data_end. flow is complete when
 * the result is ZH_PARSE_OK or ZH_PARSE_PARTIAL. For ZH_PARSE_PARTIAL the
 * caller decides from the whole frame's length whether the datagram is
 * truncated or continues outside the linear data.
 */
static __always_inline enum zh_parse_status
zh_parse(void *data, void *data_end, struct zh_flow *flow)
{
	struct zh_cursor cur = { .pos = data, .end = data_end, .offset = 0 };
	enum zh_parse_status status;
	__be16 proto;

	/*
	 * Without this, the compiler may keep a field that some path never
	 * writes in a register that the verifier rejects as uninitialized.
	 */
	__builtin_memset(flow, 0, sizeof(*flow));

	if (zh_parse_fast(data, data_end, flow, &status))
		return status;

	status = zh_parse_eth(&cur, &proto);
	if (status != ZH_PARSE_OK)
		return status;

	flow->l3_offset = cur.offset;
	if (proto == bpf_htons(ETH_P_IP))
		status = zh_parse_ipv4(&cur, flow);
	else if (proto == bpf_htons(ETH_P_IPV6))
		status = zh_parse_ipv6(&cur, flow);
	else
		status = ZH_PARSE_SKIP;
	if (status != ZH_PARSE_OK)
		return status;

	flow->l4_offset = cur.offset;
	status = zh_parse_l4(&cur, flow);
	if (status != ZH_PARSE_OK)
		return status;

	/* The headers fit, but the rest of the datagram may not. */
	if (data + flow->l3_end > data_end)
		return ZH_PARSE_PARTIAL;
	return ZH_PARSE_OK;
}

/*
 * Classifies an XDP frame. A datagram that runs past data_end is
 * truncated, unless its tail is in the fragments of a multi-buffer frame.
 * Only that rare case pays for a helper call.
 */
static __always_inline enum zh_parse_status
zh_parse_xdp(struct xdp_md *ctx, struct zh_flow *flow)
{
	enum zh_parse_status status;

	status = zh_parse((void *)(long)ctx->data, (void *)(long)ctx->data_end,
			  flow);
	if (status != ZH_PARSE_PARTIAL)
		return status;
	if (flow->l3_end > bpf_xdp_get_buff_len(ctx))
		return ZH_PARSE_SKIP;
	return ZH_PARSE_OK;
}

/*
 * Largest prefix of a non-linear skb that zh_parse_skb pulls into the
 * linear part. It covers Ethernet, two tags, IPv6 with a few extension
 * headers and TCP with options. Deeper headers stay unclassified.
 */
#define ZH_SKB_PULL_LEN		512

/*
 * Classifies an skb. When the headers run past the linear part and the skb
 * has paged data, pulls up to ZH_SKB_PULL_LEN bytes into the linear part
 * and parses again, so that direct packet access reaches those headers.
 */
static __always_inline enum zh_parse_status
zh_parse_skb(struct __sk_buff *skb, struct zh_flow *flow)
{
	enum zh_parse_status status;
	__u32 pull_len;

	status = zh_parse((void *)(long)skb->data, (void *)(long)skb->data_end,
			  flow);
	if (status == ZH_PARSE_SHORT) {
		pull_len = skb->len;
		if (pull_len > ZH_SKB_PULL_LEN)
			pull_len = ZH_SKB_PULL_LEN;

		/* A linear skb of at least pull_len bytes gains nothing. */
		if ((void *)(long)skb->data + pull_len <=
		    (void *)(long)skb->data_end)
			return ZH_PARSE_SHORT;
		if (bpf_skb_pull_data(skb, pull_len))
			return ZH_PARSE_SKIP;

		/* The pull invalidated the packet pointers: read them again. */
		status = zh_parse((void *)(long)skb->data,
				  (void *)(long)skb->data_end, flow);
	}
	if (status != ZH_PARSE_PARTIAL)
		return status;

	/* The datagram continues in paged data, or it is truncated. */
	if (flow->l3_end > skb->len)
		return ZH_PARSE_SKIP;
	return ZH_PARSE_OK;
}

#endif /* ZH_LIB_PARSE_H */
