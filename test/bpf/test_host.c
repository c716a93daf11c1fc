// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * A small host datapath for tests of chained mode: the caller side of the
 * contract in bpf/README.md, in the way cilium-patches/ implements it for
 * Cilium, with a service table that the test fills.
 *
 * host_services maps a frontend (struct zh_frontend_key: IPv4-mapped
 * address, port in network order, protocol) to a service's rev-NAT id and
 * backend count. For a classified frame to a frontend:
 * - with backends: pass, because the test topology translates the service
 *   address with nftables DNAT in the stack;
 * - without backends and its id in zh_chain_svcs: write zh_chain_meta and
 *   tail-call index 0 of zh_chain_xdp or zh_chain_tc;
 * - otherwise, or when the tail call returns because the slot is empty:
 *   the host's no-backend fallback, a drop.
 * Frames to other destinations, and frames that are not untagged IPv4 or
 * IPv6 TCP or UDP, pass.
 *
 * host_stats counts each outcome, so tests can tell the host's own drop
 * from zerohold's.
 *
 * Load test_host_xdp with expected attach type 0, as Cilium's programs
 * have, or zh_xdp_chained loaded with 0 cannot join zh_chain_xdp.
 */
#include <stdbool.h>

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "zerohold.h"
#include "chain_host_maps.h"

/* A service of the host: its rev-NAT id and how many backends it has. */
struct test_host_service {
	__u32	rev_nat_id;
	__u32	backends;
};

enum test_host_stat {
	TEST_HOST_PASS_BACKENDS	= 0,	/* service with backends, passed */
	TEST_HOST_CHAIN_CALLS	= 1,	/* tail calls attempted */
	TEST_HOST_FALLBACK	= 2,	/* no backend and no callee: dropped */
	TEST_HOST_STAT_MAX	= 3,
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct zh_frontend_key);
	__type(value, struct test_host_service);
} host_services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TEST_HOST_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} host_stats SEC(".maps");

static __always_inline void host_count(enum test_host_stat stat)
{
	__u32 key = stat;
	__u64 *count;

	count = bpf_map_lookup_elem(&host_stats, &key);
	if (count)
		*count += 1;
}

/*
 * Fills key with the frame's destination frontend. Returns false for a
 * frame that the host does not balance: not IPv4 or IPv6, IPv6 with
 * extension headers, not TCP or UDP, or truncated.
 */
static __always_inline bool host_parse(void *data, void *data_end,
				       struct zh_frontend_key *key)
{
	struct ethhdr *eth = data;
	void *l4;
	__u8 proto;

	if ((void *)(eth + 1) > data_end)
		return false;

	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip4 = (void *)(eth + 1);

		if ((void *)(ip4 + 1) > data_end || ip4->ihl < 5)
			return false;
		/* IPv4-mapped, as zerohold's frontend keys store it */
		key->addr[10] = 0xff;
		key->addr[11] = 0xff;
		__builtin_memcpy(&key->addr[12], &ip4->daddr, 4);
		proto = ip4->protocol;
		l4 = (void *)ip4 + ip4->ihl * 4;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		if ((void *)(ip6 + 1) > data_end)
			return false;
		__builtin_memcpy(key->addr, &ip6->daddr, 16);
		proto = ip6->nexthdr;
		l4 = ip6 + 1;
	} else {
		return false;
	}

	if (proto == IPPROTO_TCP) {
		struct tcphdr *tcp = l4;

		if ((void *)(tcp + 1) > data_end)
			return false;
		key->port = tcp->dest;
	} else if (proto == IPPROTO_UDP) {
		struct udphdr *udp = l4;

		if ((void *)(udp + 1) > data_end)
			return false;
		key->port = udp->dest;
	} else {
		return false;
	}
	key->proto = proto;
	return true;
}

/*
 * Returns the service of the frame's destination, or NULL when the host
 * does not balance the frame.
 */
static __always_inline struct test_host_service *
host_lookup(void *data, void *data_end)
{
	struct zh_frontend_key key = {};

	if (!host_parse(data, data_end, &key))
		return NULL;
	return bpf_map_lookup_elem(&host_services, &key);
}

/*
 * The caller contract, step 1: fills this CPU's zh_chain_meta when the
 * service is a key of zh_chain_svcs. Returns false when the host must not
 * call zerohold.
 */
static __always_inline bool host_prepare_chain(__u32 rev_nat_id,
					       enum zh_chain_point point)
{
	struct zh_chain_meta *meta;
	__u32 zero = 0;

	if (!bpf_map_lookup_elem(&zh_chain_svcs, &rev_nat_id))
		return false;

	meta = bpf_map_lookup_elem(&zh_chain_meta, &zero);
	if (!meta)
		return false;
	meta->magic = ZH_CHAIN_META_MAGIC;
	meta->service_id = rev_nat_id;
	meta->point = point;
	meta->pad = 0;
	return true;
}

SEC("xdp")
int test_host_xdp(struct xdp_md *ctx)
{
	struct test_host_service *svc;

	svc = host_lookup((void *)(long)ctx->data,
			  (void *)(long)ctx->data_end);
	if (!svc)
		return XDP_PASS;
	if (svc->backends > 0) {
		host_count(TEST_HOST_PASS_BACKENDS);
		return XDP_PASS;
	}

	/* Steps 2 and 3: the tail call returns only when the slot is empty. */
	if (host_prepare_chain(svc->rev_nat_id, ZH_CHAIN_POINT_XDP_NODEPORT)) {
		host_count(TEST_HOST_CHAIN_CALLS);
		bpf_tail_call(ctx, &zh_chain_xdp, 0);
	}
	host_count(TEST_HOST_FALLBACK);
	return XDP_DROP;
}

SEC("tc")
int test_host_tc(struct __sk_buff *skb)
{
	struct test_host_service *svc;

	svc = host_lookup((void *)(long)skb->data,
			  (void *)(long)skb->data_end);
	if (!svc)
		return TC_ACT_OK;
	if (svc->backends > 0) {
		host_count(TEST_HOST_PASS_BACKENDS);
		return TC_ACT_OK;
	}

	if (host_prepare_chain(svc->rev_nat_id, ZH_CHAIN_POINT_TC_NODEPORT)) {
		host_count(TEST_HOST_CHAIN_CALLS);
		bpf_tail_call(skb, &zh_chain_tc, 0);
	}
	host_count(TEST_HOST_FALLBACK);
	return TC_ACT_SHOT;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
