/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Callee side of chained mode: a host datapath that found no backend for a
 * service tail-calls zh_xdp_chained or zh_tc_chained. bpf/README.md has the
 * whole contract.
 */
#ifndef ZH_LIB_CHAIN_H
#define ZH_LIB_CHAIN_H

#include "lib/decide.h"

/*
 * Reads this CPU's zh_chain_meta entry and clears its magic, so that an
 * entry is used by one callee run at most and a stale one is never taken
 * for a fresh one.
 */
static __always_inline bool zh_chain_take_meta(__u32 *service_id)
{
	struct zh_chain_meta *meta;
	__u32 zero = 0;
	__u32 magic;

	meta = bpf_map_lookup_elem(&zh_chain_meta, &zero);
	if (!meta) {
		zh_count(ZH_STAT_CHAIN_BAD_META);
		return false;
	}

	magic = meta->magic;
	meta->magic = 0;
	if (magic != ZH_CHAIN_META_MAGIC) {
		zh_count(ZH_STAT_CHAIN_BAD_META);
		return false;
	}
	*service_id = meta->service_id;
	return true;
}

/*
 * Decides on a frame that the host tail-called with. Every frame is
 * dropped, because the host has no backend for it, and dropping rather
 * than rejecting means no client sees a refusal. Flow openers to a
 * managed service are held as in a cold standalone hook, whatever the
 * service's state. The caller sets match->ifindex and match->hook.
 */
static __always_inline enum zh_action
zh_decide_chained(enum zh_parse_status status, const struct zh_flow *flow,
		  struct zh_match *match)
{
	if (!zh_chain_take_meta(&match->service_id))
		return ZH_ACT_DROP;
	if (!zh_resolve_service(match))
		return ZH_ACT_DROP;

	/* The host calls only for ids in zh_chain_svcs, which is stale here. */
	if (ZH_READ_ONCE(match->service->state) == ZH_STATE_UNMANAGED) {
		zh_count(ZH_STAT_CHAIN_UNMANAGED);
		return ZH_ACT_DROP;
	}
	if (!zh_resolve_stats(match))
		return ZH_ACT_DROP;

	/*
	 * Unlike a cold standalone hook, which passes segments of established
	 * connections, the host has no backend to send them to.
	 */
	if (status != ZH_PARSE_OK || !zh_flow_opens(flow)) {
		match->stats->dropped_cold++;
		return ZH_ACT_DROP;
	}
	return zh_decide_opener(flow, match);
}

#endif /* ZH_LIB_CHAIN_H */
