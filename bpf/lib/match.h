/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Matching a classified frame to a frontend and its service. */
#ifndef ZH_LIB_MATCH_H
#define ZH_LIB_MATCH_H

#include "lib/index.h"
#include "lib/maps.h"
#include "lib/parse.h"
#include "lib/stats.h"

/*
 * A frame's service and the hook that received the frame. service and
 * stats point into zh_services and zh_svc_stats once the service is
 * resolved.
 */
struct zh_match {
	const struct zh_service		*service;
	struct zh_service_stats		*stats;
	__u32				service_id;
	__u32				ifindex;	/* ingress device */
	__u8				hook;		/* enum zh_hook */
};

/*
 * Resolves one key: zh_fe_index first, and zh_frontends only where the
 * index cannot answer (an overflowing bucket or a concurrent write).
 */
static __always_inline bool zh_lookup_key(const struct zh_fe_probe *probe,
					  __u32 mask, __u32 *service_id)
{
	const struct zh_frontend_value *frontend;
	union {
		struct zh_frontend_key	key;
		__u32			words[5];
	} k;
	int i;

	switch (zh_index_lookup(probe, mask, service_id)) {
	case ZH_INDEX_HIT:
		return true;
	case ZH_INDEX_MISS:
		return false;
	default:
		break;
	}

	/* Only this rare path needs the key in memory. */
#pragma unroll
	for (i = 0; i < 4; i++)
		k.words[i] = probe->addr[i];
	k.words[4] = probe->tail;
	frontend = bpf_map_lookup_elem(&zh_frontends, &k.key);
	if (!frontend)
		return false;
	*service_id = frontend->service_id;
	return true;
}

/*
 * Looks probe up, then its port-0 form, but only while
 * zh_config.any_port_frontends counts port-0 keys. The agent changes
 * zh_config at any time, so each field is read once.
 */
static __always_inline bool zh_lookup_probe(struct zh_fe_probe *probe,
					    __u32 *service_id)
{
	__u32 mask = ZH_READ_ONCE(zh_config.index_mask);

	if (zh_lookup_key(probe, mask, service_id))
		return true;

	if (!ZH_READ_ONCE(zh_config.any_port_frontends))
		return false;

	/* The port is the low half of the last word. */
	probe->tail &= ~(__u32)0xffff;
	return zh_lookup_key(probe, mask, service_id);
}

/*
 * Finds the service of flow's destination. In the common case both a miss
 * and a hit take no helper call. Each family has its own copy of the
 * lookup, so that the constant words of an IPv4-mapped address fold away.
 */
static __always_inline bool zh_lookup_frontend(const struct zh_flow *flow,
					       __u32 *service_id)
{
	const struct ipv6hdr *ip6h = flow->l3;
	const struct iphdr *iph = flow->l3;
	struct zh_fe_probe probe;

	if (flow->family == ZH_AF_INET) {
		zh_fe_probe_ipv4(&probe, iph->daddr, flow->dst_port,
				 flow->l4_proto);
		return zh_lookup_probe(&probe, service_id);
	}

	/*
	 * Frontend keys hold IPv4 addresses IPv4-mapped, but an IPv6 packet to
	 * such an address never reaches the IPv4 service.
	 */
	if (ip6h->daddr.in6_u.u6_addr32[0] == 0 &&
	    ip6h->daddr.in6_u.u6_addr32[1] == 0 &&
	    ip6h->daddr.in6_u.u6_addr32[2] == bpf_htonl(0xffff))
		return false;

	zh_fe_probe_ipv6(&probe, &ip6h->daddr, flow->dst_port, flow->l4_proto);
	return zh_lookup_probe(&probe, service_id);
}

/*
 * Points match->service at zh_services[match->service_id]. An id past the
 * end of the array (user space sizes it) counts ZH_STAT_BAD_SERVICE.
 */
static __always_inline bool zh_resolve_service(struct zh_match *match)
{
	__u32 id = match->service_id;

	/*
	 * A key copy keeps match out of memory: with its own address taken,
	 * the compiler builds the whole struct on the stack for every frame.
	 */
	match->service = bpf_map_lookup_elem(&zh_services, &id);
	if (!match->service) {
		zh_count(ZH_STAT_BAD_SERVICE);
		return false;
	}
	return true;
}

/*
 * Points match->stats at this CPU's zh_svc_stats entry. zh_svc_stats may
 * have been sized smaller than zh_services, which counts as a bad id too.
 */
static __always_inline bool zh_resolve_stats(struct zh_match *match)
{
	__u32 id = match->service_id;

	match->stats = bpf_map_lookup_elem(&zh_svc_stats, &id);
	if (!match->stats) {
		zh_count(ZH_STAT_BAD_SERVICE);
		return false;
	}
	return true;
}

#endif /* ZH_LIB_MATCH_H */
