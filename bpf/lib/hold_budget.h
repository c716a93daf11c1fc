/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The hold budget: how many flow openers of one service may go into
 * zh_held_ring while the agent falls behind in reading it.
 *
 * All services share the ring. Without a budget, a flood of flow openers
 * to one cold service that outpaces the agent fills the ring, and the
 * openers of every other cold service are dropped until the agent
 * catches up. With one, each service gets the rate of its zh_hold_budget
 * entry in tokens a second, and once the ring is more than half full, a
 * service that has used its tokens is dropped while the others still
 * find room. Below half, every
 * opener is held as before, so a burst of legitimate clients is never
 * cut short while the agent keeps up.
 */
#ifndef ZH_LIB_HOLD_BUDGET_H
#define ZH_LIB_HOLD_BUDGET_H

#include "lib/clock.h"
#include "lib/match.h"

#define ZH_NSEC_PER_SEC		1000000000ULL

/*
 * Adds the tokens earned since refill_ns, up to rate. Only whole tokens
 * move refill_ns on, so a fraction carries over to the next opener.
 * There is no lock. CPUs that refill at the same time may each add the
 * same tokens, which under a flood is one coarse clock tick's worth
 * (rate / HZ), or overwrite a concurrent take. The agent's own
 * per-service bound absorbs the excess.
 */
static __always_inline void zh_hold_refill(struct zh_hold_budget *budget,
					   __u32 rate, __u64 now)
{
	__u64 last = ZH_READ_ONCE(budget->refill_ns);
	__s64 tokens;
	__u64 earned;

	/* Another CPU refilled up to a later reading of the clock. */
	if (now <= last)
		return;

	/* A service idle for a second, or seen for the first time, starts full. */
	if (now - last >= ZH_NSEC_PER_SEC) {
		ZH_WRITE_ONCE(budget->tokens, (__s64)rate);
		ZH_WRITE_ONCE(budget->refill_ns, now);
		return;
	}

	earned = (now - last) * rate / ZH_NSEC_PER_SEC;
	if (!earned)
		return;
	tokens = ZH_READ_ONCE(budget->tokens) + (__s64)earned;
	if (tokens > (__s64)rate)
		tokens = rate;
	ZH_WRITE_ONCE(budget->tokens, tokens);
	ZH_WRITE_ONCE(budget->refill_ns, last + earned * ZH_NSEC_PER_SEC / rate);
}

/* True when the agent has left more than half of zh_held_ring unread. */
static __always_inline bool zh_held_ring_pressed(void)
{
	__u64 size = bpf_ringbuf_query(&zh_held_ring, BPF_RB_RING_SIZE);

	return bpf_ringbuf_query(&zh_held_ring, BPF_RB_AVAIL_DATA) > size / 2;
}

/*
 * Takes a token for a flow opener of match's service. Returns false when
 * the opener must be dropped because the service has no token left and
 * the ring is more than half full. A rate of 0 means no budget.
 */
static __always_inline bool zh_hold_admit(const struct zh_match *match)
{
	struct zh_hold_budget *budget;
	__u32 id = match->service_id;
	__u32 rate;

	budget = bpf_map_lookup_elem(&zh_hold_budget, &id);
	if (!budget) {
		/* zh_hold_budget was sized smaller than zh_services. */
		zh_count(ZH_STAT_BAD_SERVICE);
		return true;
	}

	/* The agent may rewrite the whole entry at any time, so read rate once. */
	rate = ZH_READ_ONCE(budget->rate);
	if (!rate)
		return true;

	zh_hold_refill(budget, rate, zh_coarse_ns());
	if (ZH_READ_ONCE(budget->tokens) > 0) {
		__sync_fetch_and_add(&budget->tokens, -1);
		return true;
	}
	return !zh_held_ring_pressed();
}

#endif /* ZH_LIB_HOLD_BUDGET_H */
