/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Layouts shared by the BPF programs and user space: map keys and values,
 * ring buffer records and the chained-mode contract. Every struct here is
 * mirrored in src/datapath/layout.ts, and a test compares both against the
 * BTF of the compiled object, so change them together. A restarted agent
 * replaces a pinned map whose key or value layout in BTF, member names
 * included, differs from the one recorded in zh_map_layouts, and reuses it
 * otherwise. So a field whose meaning changes needs a new name, and
 * zh_chain_meta, whose layout is not compared, needs a new size or map
 * name.
 */
#ifndef ZEROHOLD_H
#define ZEROHOLD_H

#include <linux/types.h>

/*
 * Largest frame that BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES accepts
 * on Linux 6.18 (a page minus XDP headroom and skb_shared_info). A longer
 * frame could never be re-injected, so it is dropped and counted instead of
 * held.
 */
#define ZH_MAX_FRAME		3408
/* Bytes of an 802.1Q or 802.1ad tag. */
#define ZH_VLAN_HLEN		4

/* Default sizes, all overridable by the agent before the object loads. */
#define ZH_MAX_FRONTENDS	65536
#define ZH_FE_INDEX_BUCKETS	65536	/* a power of two */
#define ZH_MAX_SERVICES		8192
#define ZH_HELD_RING_BYTES	(8 << 20)
#define ZH_WAKE_RING_BYTES	(256 << 10)

/* Parser bounds: deeper stacks are not classified and simply pass. */
#define ZH_MAX_VLAN_TAGS	2
#define ZH_MAX_IPV6_EXT_HDRS	6

/*
 * Service state, indexed by service id in zh_services. The agent flips one
 * word to open or close the gate for every frontend of a service at once.
 */
enum zh_state {
	ZH_STATE_UNMANAGED	= 0,	/* no agent configuration: pass */
	ZH_STATE_WARM		= 1,	/* gate open: pass and count activity */
	ZH_STATE_COLD		= 2,	/* gate closed: hold flow openers */
};

enum zh_service_flags {
	/*
	 * Drop flow openers and signal the wake, but keep no copy: the
	 * drop-and-retransmit behaviour, kept for comparison benchmarks.
	 */
	ZH_SVC_F_DROP_ONLY	= 1 << 0,
};

/* Hook that produced a record. */
enum zh_hook {
	ZH_HOOK_XDP		= 1,	/* standalone XDP on a node interface */
	ZH_HOOK_TC		= 2,	/* standalone tc ingress */
	ZH_HOOK_CHAIN_XDP	= 3,	/* tail call from a host XDP program */
	ZH_HOOK_CHAIN_TC	= 4,	/* tail call from a host tc program */
};

/*
 * zh_frontends key. IPv4 addresses are stored IPv4-mapped (::ffff:a.b.c.d)
 * so one table serves both families. port 0 is the any-port form, looked up
 * after an exact miss only while zh_config.any_port_frontends is non-zero.
 */
struct zh_frontend_key {
	__u8	addr[16];
	__be16	port;
	__u8	proto;		/* IPPROTO_TCP or IPPROTO_UDP */
	__u8	pad;		/* must be zero */
};

struct zh_frontend_value {
	__u32	service_id;	/* index into zh_services and zh_svc_stats */
};

/* zh_services value, written only by the agent. */
struct zh_service {
	__u32	state;		/* enum zh_state */
	__u32	flags;		/* enum zh_service_flags */
	__u64	wake_interval_ns; /* at most one wake event per interval */
};

/* zh_wake_state value, written only by BPF with compare-and-swap. */
struct zh_wake_state {
	__u64	last_wake_ns;	/* bpf_ktime_get_ns() of the last wake event */
};

/*
 * zh_hold_budget value: a token bucket of at most rate tokens that
 * refills at rate tokens per second. A flow opener takes a token. Without
 * one it is held only while zh_held_ring is at most half full
 * (lib/hold_budget.h). The agent writes rate, with tokens and refill_ns
 * zero, which starts the bucket full. BPF writes tokens and refill_ns.
 */
struct zh_hold_budget {
	__u32	rate;		/* flow openers per second; 0 for no limit */
	__u32	pad;		/* must be zero */
	__s64	tokens;		/* below 0 after concurrent takes */
	__u64	refill_ns;	/* zh_coarse_ns() that the tokens count up to */
};

/*
 * zh_liveness, a global variable in section .data.zh_liveness (lib/maps.h).
 * The agent moves the deadline forward while it runs, and on a hand-over
 * sets it to the end of the hand-over. Past it, no agent reads the held
 * ring, so flow openers pass instead of being held for no reader.
 */
struct zh_liveness {
	__u64	deadline_ns;	/* CLOCK_MONOTONIC; ~0 for none */
};

/* zh_config, a global variable in section .data.zh_config (lib/maps.h). */
struct zh_config {
	__u32	any_port_frontends; /* number of port-0 keys in zh_frontends */
	__u32	index_mask;	/* zh_fe_index buckets - 1 */
};

/*
 * zh_fe_index: a cache of zh_frontends that the packet path reads without
 * a helper call, because a hash map lookup costs more than the rest of the
 * miss path. It is direct-mapped and two-way: a key lives in one of the two
 * slots of bucket zh_fe_hash(key) & index_mask, and a bucket whose keys do
 * not fit has overflow set, which sends lookups there to zh_frontends. A
 * miss in a bucket without overflow is final, so every key of zh_frontends
 * is in its bucket or its bucket overflows. User space writes buckets
 * through a shared mapping under a sequence lock: seq is odd during a
 * write, and a reader that sees an odd or changed seq uses zh_frontends.
 */
#define ZH_FE_INDEX_WAYS	2

struct zh_fe_slot {
	__u8	addr[16];	/* the zh_frontend_key fields */
	__be16	port;
	__u8	proto;
	__u8	valid;		/* 1 when the slot holds a key */
	__u32	service_id;
};

struct zh_fe_bucket {
	__u32	seq;
	__u32	overflow;
	struct zh_fe_slot slot[ZH_FE_INDEX_WAYS];
	__u64	pad;		/* one 64-byte cache line per bucket */
};

/*
 * Bucket hash of a zh_frontend_key, read as five host-order 32-bit words
 * w0..w4 with pad zero: x = w0 * ZH_FE_HASH_M0 + ... + w4 * ZH_FE_HASH_M4
 * modulo 2^64, and the hash is the low 32 bits of (x >> 32) ^ (x >> 48).
 * The multipliers are fixed random values. The products do not depend on
 * each other, so the packet path waits for one multiply, and for an
 * IPv4-mapped address three of them are constants. The low bits of
 * x >> 32 alone spread sequential keys unevenly over small tables, so the
 * top 16 bits of x are folded into them. User space computes the same
 * function (src/datapath/frontend-index.ts).
 */
#define ZH_FE_HASH_M0		0xe220a8397b1dcdafULL
#define ZH_FE_HASH_M1		0x6e789e6aa1b965f4ULL
#define ZH_FE_HASH_M2		0x06c45d188009454fULL
#define ZH_FE_HASH_M3		0xf88bb8a8724c81ecULL
#define ZH_FE_HASH_M4		0x1b39896a51a8749bULL

/*
 * zh_svc_stats value, one per service and CPU. The agent sums the
 * counters across CPUs and takes the maximum of warm_last_seen_ns.
 */
struct zh_service_stats {
	__u64	held_frames;	/* flow openers copied to zh_held_ring */
	__u64	held_bytes;
	__u64	too_large;	/* flow openers above ZH_MAX_FRAME, dropped */
	__u64	ringbuf_full;	/* flow openers dropped: zh_held_ring full */
	__u64	fragments;	/* first fragments of flow openers, dropped */
	__u64	wake_events;	/* wake records submitted */
	__u64	wake_lost;	/* wake records lost: zh_wake_ring full */
	__u64	passed_cold;	/* non-opening segments passed while cold */
	__u64	dropped_only;	/* flow openers dropped in ZH_SVC_F_DROP_ONLY */
	__u64	warm_packets;	/* packets to the service while warm */
	__u64	warm_last_seen_ns; /* bpf_ktime_get_coarse_ns() of the last */
	__u64	no_agent;	/* flow openers passed: agent deadline past */
	__u64	dropped_cold;	/* chained frames that open no flow, dropped */
	__u64	held_limited;	/* flow openers dropped: no hold budget left */
};

/* zh_stats index: per-CPU counters that belong to no service. */
enum zh_global_stat {
	ZH_STAT_BAD_SERVICE	= 0,	/* frontend names an id past the table */
	ZH_STAT_CHAIN_BAD_META	= 1,	/* chained call without valid metadata */
	ZH_STAT_CHAIN_UNMANAGED	= 2,	/* chained call for an unmanaged id */
	ZH_STAT_REINJECTED	= 3,	/* frames passed by zh_xdp_reinject */
	ZH_STAT_MAX		= 4,
};

enum zh_held_flags {
	ZH_HELD_F_IPV6		= 1 << 0,
	ZH_HELD_F_VLAN		= 1 << 1,	/* vlan_tci and vlan_proto valid */
};

/*
 * zh_held_ring record: a header followed by frame_len bytes of the frame as
 * it arrived, Ethernet header first. The record is reserved in size classes,
 * so it may be longer than the header plus frame_len; the tail is undefined.
 */
struct zh_held_hdr {
	__u64	timestamp_ns;	/* bpf_ktime_get_ns(), CLOCK_MONOTONIC */
	__u32	service_id;
	__u32	ifindex;	/* ingress device, in the hook's netns */
	__u32	rx_queue;
	__u16	frame_len;
	__u8	hook;		/* enum zh_hook */
	__u8	l4_proto;
	__u16	l3_offset;	/* IP header offset in the frame */
	__u16	l4_offset;	/* TCP or UDP header offset in the frame */
	__u16	flags;		/* enum zh_held_flags */
	__be16	vlan_proto;	/* tag stripped by the device before tc */
	__u16	vlan_tci;
	__u16	pad[3];		/* keeps the frame 8-byte aligned */
};

/* zh_wake_ring record, at most one per service per wake_interval_ns. */
struct zh_wake_event {
	__u64	timestamp_ns;
	__u32	service_id;
	__u32	ifindex;
	__u8	src_addr[16];	/* IPv4-mapped for IPv4, like the frontend */
	__u8	dst_addr[16];
	__be16	src_port;
	__be16	dst_port;
	__u8	l4_proto;
	__u8	hook;		/* enum zh_hook */
	__u16	pad;
};

/*
 * Metadata in front of a re-injected frame. User space passes it in
 * data_in ahead of the frame; zh_xdp_reinject stamps the magic. tc programs
 * read it from data_meta to tell a re-injected frame from a new one.
 */
#define ZH_REINJECT_MAGIC	0x7a687231	/* "zhr1" */

struct zh_reinject_meta {
	__u32	magic;
	__u32	service_id;
};

/*
 * Return values of zh_tc_udp_bound, which the agent runs with BPF_PROG_RUN
 * to learn whether a UDP socket would receive a datagram (lib/udp_bound.h).
 */
enum zh_udp_bound_result {
	ZH_UDP_UNBOUND		= 0,
	ZH_UDP_BOUND		= 1,
	ZH_UDP_MALFORMED	= 2,
};

/*
 * Chained mode. A host datapath that finds no backend for a service whose
 * id is a key of zh_chain_svcs fills zh_chain_meta on the current CPU and
 * tail-calls index 0 of zh_chain_xdp or zh_chain_tc. bpf/README.md has the
 * whole contract.
 */
#define ZH_CHAIN_META_MAGIC	0x7a686331	/* "zhc1" */
#define ZH_CHAIN_MAX_SERVICES	65536

enum zh_chain_point {
	ZH_CHAIN_POINT_XDP_NODEPORT	= 1,
	ZH_CHAIN_POINT_TC_NODEPORT	= 2,
	ZH_CHAIN_POINT_TC_LXC		= 3,
};

struct zh_chain_meta {
	__u32	magic;		/* ZH_CHAIN_META_MAGIC, cleared by the callee */
	__u32	service_id;	/* the host's service id (Cilium: rev-NAT id) */
	__u32	point;		/* enum zh_chain_point */
	__u32	pad;
};

/*
 * zh_map_layouts key and value: a pinned map's name, and digests of the
 * layouts of its key and value in the object's BTF, written by the agent
 * after each load. The next agent compares them with its own object's,
 * because reading the BTF that the kernel keeps with a map needs
 * CAP_SYS_ADMIN. A digest is the first 16 bytes of the SHA-256 of the
 * layout string (src/native/btf_layout.h), all zero for a map without
 * BTF. This layout must never change.
 */
#define ZH_MAP_NAME_LEN		16	/* BPF_OBJ_NAME_LEN, NUL included */
#define ZH_LAYOUT_DIGEST_LEN	16

struct zh_map_name {
	char	name[ZH_MAP_NAME_LEN];	/* NUL-padded */
};

struct zh_map_layout {
	__u8	key_digest[ZH_LAYOUT_DIGEST_LEN];
	__u8	value_digest[ZH_LAYOUT_DIGEST_LEN];
};

#endif /* ZEROHOLD_H */
