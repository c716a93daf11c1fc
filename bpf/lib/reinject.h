/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Marker of re-injected frames. The agent re-injects a held frame with
 * BPF_PROG_RUN and BPF_F_TEST_XDP_LIVE_FRAMES through zh_xdp_reinject,
 * which stamps struct zh_reinject_meta at data_meta. The stack keeps that
 * metadata on the skb, so the tc hook can tell the frame from a new one.
 */
#ifndef ZH_LIB_REINJECT_H
#define ZH_LIB_REINJECT_H

#include "lib/common.h"

/*
 * Stamps the magic into the metadata user space passed ahead of the frame,
 * keeping its service_id, or prepends new metadata with service_id 0. A
 * failed bpf_xdp_adjust_meta() leaves the frame unmarked.
 */
static __always_inline void zh_reinject_stamp(struct xdp_md *ctx)
{
	struct zh_reinject_meta *meta = (void *)(long)ctx->data_meta;

	if ((void *)(meta + 1) <= (void *)(long)ctx->data) {
		meta->magic = ZH_REINJECT_MAGIC;
		return;
	}

	if (bpf_xdp_adjust_meta(ctx, -(int)sizeof(*meta)))
		return;
	meta = (void *)(long)ctx->data_meta;
	if ((void *)(meta + 1) > (void *)(long)ctx->data)
		return;
	meta->magic = ZH_REINJECT_MAGIC;
	meta->service_id = 0;
}

static __always_inline bool zh_skb_is_reinjected(struct __sk_buff *skb)
{
	struct zh_reinject_meta *meta = (void *)(long)skb->data_meta;

	if ((void *)(meta + 1) > (void *)(long)skb->data)
		return false;
	return meta->magic == ZH_REINJECT_MAGIC;
}

#endif /* ZH_LIB_REINJECT_H */
