/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Whether a UDP socket would receive a datagram. Before a release
 * re-injects held UDP flows, the agent checks this for each endpoint on
 * its node, because a datagram that meets no bound socket is lost to an
 * ICMP port unreachable. Unlike a probe datagram, the lookup sends the
 * server nothing.
 *
 * The agent runs zh_tc_udp_bound with BPF_PROG_RUN on an Ethernet frame
 * that carries the datagram's IP and UDP headers, and passes the id of
 * the endpoint's network namespace, relative to its own, in cb[0]. A
 * negative id means its own namespace (an endpoint on the host network).
 */
#ifndef ZH_LIB_UDP_BOUND_H
#define ZH_LIB_UDP_BOUND_H

#include "lib/common.h"

static __always_inline int zh_udp_tuple_v4(void *l3, void *data_end,
					   struct bpf_sock_tuple *tuple)
{
	struct iphdr *ip = l3;
	struct udphdr *udp = (void *)(ip + 1);

	if ((void *)(udp + 1) > data_end)
		return -1;
	if (ip->ihl != 5 || ip->protocol != IPPROTO_UDP)
		return -1;

	tuple->ipv4.saddr = ip->saddr;
	tuple->ipv4.daddr = ip->daddr;
	tuple->ipv4.sport = udp->source;
	tuple->ipv4.dport = udp->dest;
	return sizeof(tuple->ipv4);
}

static __always_inline int zh_udp_tuple_v6(void *l3, void *data_end,
					   struct bpf_sock_tuple *tuple)
{
	struct ipv6hdr *ip6 = l3;
	struct udphdr *udp = (void *)(ip6 + 1);

	if ((void *)(udp + 1) > data_end)
		return -1;
	if (ip6->nexthdr != IPPROTO_UDP)
		return -1;

	__builtin_memcpy(tuple->ipv6.saddr, &ip6->saddr, sizeof(tuple->ipv6.saddr));
	__builtin_memcpy(tuple->ipv6.daddr, &ip6->daddr, sizeof(tuple->ipv6.daddr));
	tuple->ipv6.sport = udp->source;
	tuple->ipv6.dport = udp->dest;
	return sizeof(tuple->ipv6);
}

/*
 * Returns ZH_UDP_BOUND or ZH_UDP_UNBOUND, or ZH_UDP_MALFORMED for a frame
 * that is not IPv4 (without options) or IPv6 (without extension headers)
 * carrying UDP. The lookup is the one the stack makes for an arriving
 * datagram, so an unconnected socket bound to the port on the wildcard
 * address or on the endpoint's address counts. A connected socket counts
 * only for the source address and port of the frame, which the agent
 * leaves unspecified, so server sockets are what it finds. It runs on
 * the loopback device of the agent's namespace, so a socket bound to
 * another device with SO_BINDTODEVICE is not found.
 */
static __always_inline int zh_udp_bound(struct __sk_buff *skb)
{
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = (void *)(long)skb->data;
	struct bpf_sock_tuple tuple = {};
	struct bpf_sock *sk;
	int size = -1;

	if ((void *)(eth + 1) > data_end)
		return ZH_UDP_MALFORMED;
	if (eth->h_proto == bpf_htons(ETH_P_IP))
		size = zh_udp_tuple_v4(eth + 1, data_end, &tuple);
	else if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		size = zh_udp_tuple_v6(eth + 1, data_end, &tuple);
	if (size < 0)
		return ZH_UDP_MALFORMED;

	/* The helper reads a negative 32-bit id as the caller's namespace. */
	sk = bpf_sk_lookup_udp(skb, &tuple, size, (__u64)(__s32)skb->cb[0], 0);
	if (!sk)
		return ZH_UDP_UNBOUND;
	bpf_sk_release(sk);
	return ZH_UDP_BOUND;
}

#endif /* ZH_LIB_UDP_BOUND_H */
