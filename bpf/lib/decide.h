/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The verdict for a classified frame in the standalone hooks. */
#ifndef ZH_LIB_DECIDE_H
#define ZH_LIB_DECIDE_H

#include "lib/clock.h"
#include "lib/match.h"
#include "lib/wake.h"

enum zh_action {
	ZH_ACT_PASS,
	ZH_ACT_DROP,
	ZH_ACT_HOLD,	/* copy into zh_held_ring, then drop */
	ZH_ACT_OPENER,	/* a flow opener to a cold service: zh_decide_opener */
};

/*
 * Decides on a flow opener to a service that has no backend: signals the
 * wake, then drops or holds the frame. Shared by standalone and chained
 * hooks. The caller sets match->ifindex first.
 */
static __always_inline enum zh_action
zh_decide_opener(const struct zh_flow *flow, const struct zh_match *match)
{
	zh_signal_wake(flow, match);

	/*
	 * No agent has renewed the deadline: it crashed, hangs or ended a
	 * hand-over. A held frame would wait for no one, so the frame
	 * passes as if zerohold were absent. The wake signal waits in its
	 * ring for the next agent.
	 */
	if (zh_coarse_ns() > ZH_READ_ONCE(zh_liveness.deadline_ns)) {
		match->stats->no_agent++;
		return ZH_ACT_PASS;
	}

	/*
	 * Only the first fragment carries the ports, so the later ones
	 * passed unclassified, and a held first fragment would be
	 * re-injected apart from them. The sender's retry, if any, finds
	 * the service awake.
	 */
	if (flow->is_fragment) {
		match->stats->fragments++;
		return ZH_ACT_DROP;
	}

	if (match->service->flags & ZH_SVC_F_DROP_ONLY) {
		match->stats->dropped_only++;
		return ZH_ACT_DROP;
	}
	return ZH_ACT_HOLD;
}

/*
 * Decides on a classified frame in a standalone hook. The caller sets
 * match->hook. Frames to no frontend, to unmanaged or warm services, and
 * frames that open no flow pass. A flow opener to a cold service returns
 * ZH_ACT_OPENER, and the caller passes it on to zh_decide_opener after
 * setting match->ifindex, which only openers need and which costs XDP three
 * dependent loads.
 */
static __always_inline enum zh_action zh_decide(const struct zh_flow *flow,
						struct zh_match *match)
{
	__u32 state;

	if (!zh_lookup_frontend(flow, &match->service_id))
		return ZH_ACT_PASS;
	if (!zh_resolve_service(match))
		return ZH_ACT_PASS;

	/* The agent flips state at any time: read it once. */
	state = ZH_READ_ONCE(match->service->state);
	if (state != ZH_STATE_WARM && state != ZH_STATE_COLD)
		return ZH_ACT_PASS;
	if (!zh_resolve_stats(match))
		return ZH_ACT_PASS;

	if (state == ZH_STATE_WARM) {
		match->stats->warm_packets++;
		match->stats->warm_last_seen_ns = zh_coarse_ns();
		return ZH_ACT_PASS;
	}

	/* Established connections keep working while the gate closes. */
	if (!zh_flow_opens(flow)) {
		match->stats->passed_cold++;
		return ZH_ACT_PASS;
	}
	return ZH_ACT_OPENER;
}

#endif /* ZH_LIB_DECIDE_H */
