// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Test stand-in for a host datapath (such as Cilium) that implements the
 * caller side of zerohold's chained mode, as bpf/README.md defines it.
 * It pretends that the service in caller_config[0] has no backend for
 * every untagged IPv4 and IPv6 frame.
 *
 * Verdicts, which tests assert:
 * - service id 0 or a frame that is not IPv4/IPv6: XDP_PASS / TC_ACT_OK,
 *   the host's normal forwarding;
 * - the tail call ran: the callee's verdict;
 * - the service is not in zh_chain_svcs, or index 0 of the prog array is
 *   empty: XDP_TX (3) / TC_ACT_RECLASSIFY (1), standing for the host's own
 *   no-backend handling.
 *
 * Load chain_caller_xdp with expected attach type 0, as Cilium's programs
 * have, or zh_xdp_chained loaded with 0 cannot join zh_chain_xdp.
 */
#include <stdbool.h>

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "zerohold.h"
#include "chain_host_maps.h"

#define CALLER_FALLBACK_XDP	XDP_TX
#define CALLER_FALLBACK_TC	TC_ACT_RECLASSIFY

/* caller_config[0]: the service id without backends, 0 for none. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} caller_config SEC(".maps");

/*
 * Returns the service id to hand to zerohold for the frame, or 0 when the
 * host would forward it normally.
 */
static __always_inline __u32 caller_no_backend_service(void *data,
						       void *data_end)
{
	struct ethhdr *eth = data;
	__u32 zero = 0;
	__u32 *service_id;

	if ((void *)(eth + 1) > data_end)
		return 0;
	if (eth->h_proto != bpf_htons(ETH_P_IP) &&
	    eth->h_proto != bpf_htons(ETH_P_IPV6))
		return 0;

	service_id = bpf_map_lookup_elem(&caller_config, &zero);
	return service_id ? *service_id : 0;
}

/*
 * Fills this CPU's zh_chain_meta for service_id if zerohold manages it.
 * Returns false when the host must handle the frame itself.
 */
static __always_inline bool caller_prepare_chain(__u32 service_id,
						 enum zh_chain_point point)
{
	struct zh_chain_meta *meta;
	__u32 zero = 0;

	if (!bpf_map_lookup_elem(&zh_chain_svcs, &service_id))
		return false;

	meta = bpf_map_lookup_elem(&zh_chain_meta, &zero);
	if (!meta)
		return false;
	meta->magic = ZH_CHAIN_META_MAGIC;
	meta->service_id = service_id;
	meta->point = point;
	meta->pad = 0;
	return true;
}

SEC("xdp")
int chain_caller_xdp(struct xdp_md *ctx)
{
	__u32 service_id;

	service_id = caller_no_backend_service((void *)(long)ctx->data,
					       (void *)(long)ctx->data_end);
	if (!service_id)
		return XDP_PASS;

	if (caller_prepare_chain(service_id, ZH_CHAIN_POINT_XDP_NODEPORT))
		bpf_tail_call(ctx, &zh_chain_xdp, 0);
	return CALLER_FALLBACK_XDP;
}

SEC("tc")
int chain_caller_tc(struct __sk_buff *skb)
{
	__u32 service_id;

	service_id = caller_no_backend_service((void *)(long)skb->data,
					       (void *)(long)skb->data_end);
	if (!service_id)
		return TC_ACT_OK;

	if (caller_prepare_chain(service_id, ZH_CHAIN_POINT_TC_NODEPORT))
		bpf_tail_call(skb, &zh_chain_tc, 0);
	return CALLER_FALLBACK_TC;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
