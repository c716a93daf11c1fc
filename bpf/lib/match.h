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
static __always_inline bool zh_lookup_key(const union zh_key_words *k,
					  __u32 mask, __u32 *service_id)
{
	const struct zh_frontend_value *frontend;

	switch (zh_index_lookup(k, mask, service_id)) {
	case ZH_INDEX_HIT:
		return true;
	case ZH_INDEX_MISS:
		return false;
	default:
		break;
	}

	frontend = bpf_map_lookup_elem(&zh_frontends, &k->key);
	if (!frontend)
		return false;
	*service_id = frontend->service_id;
	return true;
}

/*
 * Finds the service of flow's destination: the exact port first, then
 * port 0, but only while zh_config says port-0 keys exist. In the common
 * case both a miss and a hit take no helper call.
 */
static __always_inline bool zh_lookup_frontend(const struct zh_flow *flow,
					       __u32 *service_id)
{
	union zh_key_words k __attribute__((aligned(8)));
	const struct zh_config *config;
	__u32 zero = 0;

	config = bpf_map_lookup_elem(&zh_config, &zero);
	if (!config)
		return false;

	__builtin_memcpy(k.key.addr, flow->dst.bytes, sizeof(k.key.addr));
	k.key.port = flow->dst_port;
	k.key.proto = flow->l4_proto;
	k.key.pad = 0;
	if (zh_lookup_key(&k, config->index_mask, service_id))
		return true;

	if (!ZH_READ_ONCE(config->any_port_frontends))
		return false;
	k.key.port = 0;
	return zh_lookup_key(&k, config->index_mask, service_id);
}

/*
 * Points match->service at zh_services[match->service_id]. An id past the
 * end of the array (user space sizes it) counts ZH_STAT_BAD_SERVICE.
 */
static __always_inline bool zh_resolve_service(struct zh_match *match)
{
	match->service = bpf_map_lookup_elem(&zh_services, &match->service_id);
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
	match->stats = bpf_map_lookup_elem(&zh_svc_stats, &match->service_id);
	if (!match->stats) {
		zh_count(ZH_STAT_BAD_SERVICE);
		return false;
	}
	return true;
}

/* Tells whether flow may open a connection: a TCP SYN or any UDP datagram. */
static __always_inline bool zh_flow_opens(const struct zh_flow *flow)
{
	if (flow->l4_proto == IPPROTO_UDP)
		return true;
	return (flow->tcp_flags & (ZH_TCP_SYN | ZH_TCP_ACK | ZH_TCP_RST)) ==
	       ZH_TCP_SYN;
}

#endif /* ZH_LIB_MATCH_H */
