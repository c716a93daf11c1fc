// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * zerohold datapath: holds the first packet of each new flow to a cold
 * service and asks the agent to wake the service. Entry points only: the
 * logic lives in lib/, and bpf/README.md describes programs and maps.
 */
#include "lib/common.h"
#include "lib/maps.h"
#include "lib/stats.h"
#include "lib/parse.h"
#include "lib/decide.h"
#include "lib/hold.h"
#include "lib/chain.h"
#include "lib/reinject.h"
#include "lib/udp_bound.h"

/* tc verdict that lets later tc programs on the hook run. */
#define ZH_TC_PASS	TC_ACT_UNSPEC

/* Standalone XDP on a node interface. */
SEC("xdp")
int zh_xdp_hold(struct xdp_md *ctx)
{
	struct zh_match match = { .hook = ZH_HOOK_XDP };
	enum zh_action action;
	struct zh_flow flow;

	if (zh_parse_xdp(ctx, &flow) != ZH_PARSE_OK)
		return XDP_PASS;

	action = zh_decide(&flow, &match);
	if (action == ZH_ACT_OPENER) {
		match.ifindex = ctx->ingress_ifindex;
		action = zh_decide_opener(&flow, &match);
	}
	if (action == ZH_ACT_HOLD)
		zh_hold_xdp(ctx, &flow, &match);
	return action == ZH_ACT_PASS ? XDP_PASS : XDP_DROP;
}

/* Standalone tc ingress. */
SEC("tc")
int zh_tc_hold(struct __sk_buff *skb)
{
	struct zh_match match = { .hook = ZH_HOOK_TC };
	enum zh_action action;
	struct zh_flow flow;

	/* A re-injected frame must reach the service, not be held again. */
	if (zh_skb_is_reinjected(skb))
		return ZH_TC_PASS;

	if (zh_parse_skb(skb, &flow) != ZH_PARSE_OK)
		return ZH_TC_PASS;

	action = zh_decide(&flow, &match);
	if (action == ZH_ACT_OPENER) {
		match.ifindex = skb->ifindex;
		action = zh_decide_opener(&flow, &match);
	}
	if (action == ZH_ACT_HOLD)
		zh_hold_tc(skb, &flow, &match);
	return action == ZH_ACT_PASS ? ZH_TC_PASS : TC_ACT_SHOT;
}

/*
 * Never attached: the agent runs it with BPF_PROG_RUN and
 * BPF_F_TEST_XDP_LIVE_FRAMES to re-inject a held frame. XDP_PASS hands
 * the frame to the stack of its original device, even when stamping fails.
 */
SEC("xdp")
int zh_xdp_reinject(struct xdp_md *ctx)
{
	zh_reinject_stamp(ctx);
	zh_count(ZH_STAT_REINJECTED);
	return XDP_PASS;
}

/*
 * Never attached: the agent runs it with BPF_PROG_RUN before it releases
 * held UDP flows, to learn whether a socket is bound for them yet.
 */
SEC("tc")
int zh_tc_udp_bound(struct __sk_buff *skb)
{
	return zh_udp_bound(skb);
}

/* Tail-called from a host XDP program that found no backend. */
SEC("xdp")
int zh_xdp_chained(struct xdp_md *ctx)
{
	struct zh_match match = {
		.ifindex = ctx->ingress_ifindex,
		.hook = ZH_HOOK_CHAIN_XDP,
	};
	enum zh_parse_status status;
	struct zh_flow flow;

	status = zh_parse_xdp(ctx, &flow);
	if (zh_decide_chained(status, &flow, &match) == ZH_ACT_HOLD)
		zh_hold_xdp(ctx, &flow, &match);
	return XDP_DROP;
}

/* Tail-called from a host tc program that found no backend. */
SEC("tc")
int zh_tc_chained(struct __sk_buff *skb)
{
	struct zh_match match = {
		.ifindex = skb->ifindex,
		.hook = ZH_HOOK_CHAIN_TC,
	};
	enum zh_parse_status status;
	struct zh_flow flow;

	status = zh_parse_skb(skb, &flow);
	if (zh_decide_chained(status, &flow, &match) == ZH_ACT_HOLD)
		zh_hold_tc(skb, &flow, &match);
	return TC_ACT_SHOT;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/*
 * The record layouts live only in ring buffer memory, which has no BTF
 * type, so clang would leave them out of the object's BTF. This global
 * function is never called or loaded; its parameters keep the layouts in
 * BTF for bpftool and for the user-space layout test.
 */
__attribute__((noinline, used)) int
zh_btf_record_layouts(struct zh_held_hdr *held, struct zh_wake_event *wake,
		      struct zh_reinject_meta *meta)
{
	return held && wake && meta;
}
