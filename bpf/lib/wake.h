/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Rate-limited wake requests to the agent through zh_wake_ring. */
#ifndef ZH_LIB_WAKE_H
#define ZH_LIB_WAKE_H

#include "lib/match.h"

/*
 * Tells whether this CPU may emit a wake event for the service now, at most
 * once per wake_interval_ns across all CPUs. The CPU whose compare-and-swap
 * moves last_wake_ns from the value it read to now is the only one that
 * may emit. Interval 0 lets every flow opener emit.
 */
static __always_inline bool zh_wake_due(struct zh_wake_state *state,
					__u64 interval, __u64 now)
{
	__u64 last = ZH_READ_ONCE(state->last_wake_ns);

	if (interval == 0) {
		state->last_wake_ns = now;
		return true;
	}

	/*
	 * now < last means another CPU read the clock after this one and
	 * already won, so it emitted.
	 */
	if (last != 0 && (now < last || now - last < interval))
		return false;
	return __sync_val_compare_and_swap(&state->last_wake_ns, last, now) ==
	       last;
}

/* Emits a wake event for match's service unless one was emitted recently. */
static __always_inline void zh_signal_wake(const struct zh_flow *flow,
					   const struct zh_match *match)
{
	struct zh_wake_state *state;
	struct zh_wake_event *event;
	__u32 id = match->service_id;
	__u64 now;

	state = bpf_map_lookup_elem(&zh_wake_state, &id);
	if (!state) {
		/* zh_wake_state was sized smaller than zh_services. */
		zh_count(ZH_STAT_BAD_SERVICE);
		return;
	}

	now = bpf_ktime_get_ns();
	if (!zh_wake_due(state, match->service->wake_interval_ns, now))
		return;

	event = bpf_ringbuf_reserve(&zh_wake_ring, sizeof(*event), 0);
	if (!event) {
		match->stats->wake_lost++;
		return;
	}
	event->timestamp_ns = now;
	event->service_id = match->service_id;
	event->ifindex = match->ifindex;
	zh_flow_addrs(flow, event->src_addr, event->dst_addr);
	event->src_port = flow->src_port;
	event->dst_port = flow->dst_port;
	event->l4_proto = flow->l4_proto;
	event->hook = match->hook;
	event->pad = 0;
	bpf_ringbuf_submit(event, 0);
	match->stats->wake_events++;
}

#endif /* ZH_LIB_WAKE_H */
