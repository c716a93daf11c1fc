/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Matching a classified frame to a frontend and its service. */
#ifndef ZH_LIB_MATCH_H
#define ZH_LIB_MATCH_H

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
 * Looks up the frontend of flow's destination: the exact port first, then
 * port 0, but only while zh_config.any_port_frontends is non-zero. A miss
 * then costs one hash lookup, as the verifier inlines the zh_config lookup.
 */
static __always_inline const struct zh_frontend_value *
zh_lookup_frontend(const struct zh_flow *flow)
{
	struct zh_frontend_key key __attribute__((aligned(8)));
	const struct zh_frontend_value *frontend;
	const struct zh_config *config;
	__u32 zero = 0;

	__builtin_memcpy(key.addr, flow->dst.bytes, sizeof(key.addr));
	key.port = flow->dst_port;
	key.proto = flow->l4_proto;
	key.pad = 0;
	frontend = bpf_map_lookup_elem(&zh_frontends, &key);
	if (frontend)
		return frontend;

	config = bpf_map_lookup_elem(&zh_config, &zero);
	if (!config || !ZH_READ_ONCE(config->any_port_frontends))
		return NULL;
	key.port = 0;
	return bpf_map_lookup_elem(&zh_frontends, &key);
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
