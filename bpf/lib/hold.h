/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Holding a flow opener: copying the whole frame into a zh_held_ring
 * record so that the agent can re-inject it once the service is up.
 */
#ifndef ZH_LIB_HOLD_H
#define ZH_LIB_HOLD_H

#include "lib/hold_budget.h"
#include "lib/match.h"

/*
 * bpf_ringbuf_reserve() needs a constant size, so records come in size
 * classes. The frame capacity after the header is the first class that
 * fits the frame. A typical SYN (74 bytes over IPv4, 94 over IPv6) fits
 * the smallest class.
 */
#define ZH_HELD_CLASS_1		128
#define ZH_HELD_CLASS_2		256
#define ZH_HELD_CLASS_3		512
#define ZH_HELD_CLASS_4		1024
#define ZH_HELD_CLASS_5		2048
#define ZH_HELD_CLASS_6		ZH_MAX_FRAME

#define ZH_HELD_RESERVE(capacity)					\
	bpf_ringbuf_reserve(&zh_held_ring,				\
			    sizeof(struct zh_held_hdr) + (capacity), 0)

/*
 * Reserves a record whose capacity fits frame_len, which must not exceed
 * ZH_MAX_FRAME. Each branch pairs the bound on frame_len with a constant
 * record size, which is how the verifier learns that the copy fits.
 */
static __always_inline struct zh_held_hdr *zh_held_reserve(__u32 frame_len)
{
	if (frame_len <= ZH_HELD_CLASS_1)
		return ZH_HELD_RESERVE(ZH_HELD_CLASS_1);
	if (frame_len <= ZH_HELD_CLASS_2)
		return ZH_HELD_RESERVE(ZH_HELD_CLASS_2);
	if (frame_len <= ZH_HELD_CLASS_3)
		return ZH_HELD_RESERVE(ZH_HELD_CLASS_3);
	if (frame_len <= ZH_HELD_CLASS_4)
		return ZH_HELD_RESERVE(ZH_HELD_CLASS_4);
	if (frame_len <= ZH_HELD_CLASS_5)
		return ZH_HELD_RESERVE(ZH_HELD_CLASS_5);
	return ZH_HELD_RESERVE(ZH_HELD_CLASS_6);
}

static __always_inline void zh_held_fill(struct zh_held_hdr *hdr,
					 const struct zh_flow *flow,
					 const struct zh_match *match,
					 __u32 frame_len, __u32 rx_queue)
{
	/*
	 * Ring buffer memory keeps bytes of older records. Zeroing first
	 * clears the padding and the VLAN fields, which only tc sets.
	 */
	__builtin_memset(hdr, 0, sizeof(*hdr));
	hdr->timestamp_ns = bpf_ktime_get_ns();
	hdr->service_id = match->service_id;
	hdr->ifindex = match->ifindex;
	hdr->rx_queue = rx_queue;
	hdr->frame_len = frame_len;
	hdr->hook = match->hook;
	hdr->l4_proto = flow->l4_proto;
	hdr->l3_offset = flow->l3_offset;
	hdr->l4_offset = flow->l4_offset;
	if (flow->family == ZH_AF_INET6)
		hdr->flags = ZH_HELD_F_IPV6;
}

/*
 * Submits the record when the copy succeeded and discards it otherwise.
 * A failed copy counts as ringbuf_full, because either way the opener is
 * dropped with no copy kept and the client's retransmission gets another
 * chance.
 */
static __always_inline void zh_held_commit(struct zh_held_hdr *hdr,
					   long copy_err, __u32 frame_len,
					   struct zh_service_stats *stats)
{
	if (copy_err) {
		bpf_ringbuf_discard(hdr, 0);
		stats->ringbuf_full++;
		return;
	}
	bpf_ringbuf_submit(hdr, 0);
	stats->held_frames++;
	stats->held_bytes += frame_len;
}

/* Holds an XDP frame, multi-buffer included. The caller drops the frame. */
static __always_inline void zh_hold_xdp(struct xdp_md *ctx,
					const struct zh_flow *flow,
					const struct zh_match *match)
{
	struct zh_held_hdr *hdr;
	long err;
	__u64 len;

	len = bpf_xdp_get_buff_len(ctx);
	if (len > ZH_MAX_FRAME) {
		match->stats->too_large++;
		return;
	}

	/* zh_parse saw the headers, so this only proves len > 0. */
	if (len < sizeof(struct ethhdr))
		return;

	if (!zh_hold_admit(match)) {
		match->stats->held_limited++;
		return;
	}

	hdr = zh_held_reserve(len);
	if (!hdr) {
		match->stats->ringbuf_full++;
		return;
	}
	zh_held_fill(hdr, flow, match, len, ctx->rx_queue_index);

	err = bpf_xdp_load_bytes(ctx, 0, hdr + 1, len);
	zh_held_commit(hdr, err, len, match->stats);
}

/*
 * Holds an skb, paged data included. A VLAN tag that the device stripped
 * is not in the copied bytes, so it goes into the header instead. The
 * caller drops the skb.
 */
static __always_inline void zh_hold_tc(struct __sk_buff *skb,
				       const struct zh_flow *flow,
				       const struct zh_match *match)
{
	struct zh_held_hdr *hdr;
	__u32 rx_queue = 0;
	__u32 len;
	long err;

	/*
	 * Re-injection puts a stripped VLAN tag back in front of the frame,
	 * so such a frame must leave room for it under ZH_MAX_FRAME.
	 */
	len = skb->len;
	if (len > ZH_MAX_FRAME - (skb->vlan_present ? ZH_VLAN_HLEN : 0)) {
		match->stats->too_large++;
		return;
	}

	/* zh_parse saw the headers, so this only proves len > 0. */
	if (len < sizeof(struct ethhdr))
		return;

	/* The stack records the receive queue as queue index + 1. */
	if (skb->queue_mapping)
		rx_queue = skb->queue_mapping - 1;

	if (!zh_hold_admit(match)) {
		match->stats->held_limited++;
		return;
	}

	hdr = zh_held_reserve(len);
	if (!hdr) {
		match->stats->ringbuf_full++;
		return;
	}
	zh_held_fill(hdr, flow, match, len, rx_queue);
	if (skb->vlan_present) {
		hdr->flags |= ZH_HELD_F_VLAN;
		hdr->vlan_proto = skb->vlan_proto;
		hdr->vlan_tci = skb->vlan_tci;
	}

	err = bpf_skb_load_bytes(skb, 0, hdr + 1, len);
	zh_held_commit(hdr, err, len, match->stats);
}

#endif /* ZH_LIB_HOLD_H */
