/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Maps of zerohold.o. User space opens them by these names and chooses pin
 * paths and sizes before the object loads, so no map here has a pinning
 * attribute, and max_entries is only a default.
 */
#ifndef ZH_LIB_MAPS_H
#define ZH_LIB_MAPS_H

#include "lib/common.h"

/* Frontend (address, port, protocol) to service id, written by the agent. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, ZH_MAX_FRONTENDS);
	__type(key, struct zh_frontend_key);
	__type(value, struct zh_frontend_value);
} zh_frontends SEC(".maps");

/*
 * Call-free cache of zh_frontends (see zerohold.h), written by the agent
 * through a shared mapping, hence BPF_F_MMAPABLE.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, ZH_FE_INDEX_BUCKETS);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct zh_fe_bucket);
} zh_fe_index SEC(".maps");

/* Service state and flags by service id, written by the agent. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, ZH_MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct zh_service);
} zh_services SEC(".maps");

/* Time of the last wake event by service id, written by BPF only. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, ZH_MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct zh_wake_state);
} zh_wake_state SEC(".maps");

/* Hold budget by service id: the rate from the agent, the bucket from BPF. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, ZH_MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct zh_hold_budget);
} zh_hold_budget SEC(".maps");

/* Per-service counters, written by BPF, summed over CPUs by the agent. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ZH_MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct zh_service_stats);
} zh_svc_stats SEC(".maps");

/* Counters that belong to no service, indexed by enum zh_global_stat. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ZH_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} zh_stats SEC(".maps");

/*
 * Datapath settings, written by the agent. A global variable in its own
 * data section costs the packet path one load from a constant address,
 * where an ARRAY map cost an inlined lookup through a key on the stack.
 * libbpf backs the section with an internal ARRAY map of one entry that
 * user space opens as ".data.zh_config". The initial value fits the
 * default zh_fe_index size with no port-0 keys, and the agent writes the
 * real one before it attaches a program.
 */
struct zh_config zh_config SEC(".data.zh_config") = {
	.any_port_frontends = 0,
	.index_mask = ZH_FE_INDEX_BUCKETS - 1,
};

/*
 * The agent's deadline, written by the agent like zh_config. A fresh object
 * has none, so that the agent's first write, not the load, starts it.
 */
struct zh_liveness zh_liveness SEC(".data.zh_liveness") = {
	.deadline_ns = ~0ULL,
};

/* Held flow openers: struct zh_held_hdr followed by the frame. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, ZH_HELD_RING_BYTES);
} zh_held_ring SEC(".maps");

/* Wake requests: struct zh_wake_event, rate limited per service. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, ZH_WAKE_RING_BYTES);
} zh_wake_ring SEC(".maps");

/*
 * Metadata a host datapath leaves before tail-calling a chained entry. In
 * chained mode the agent reuses the host's pinned map of the same name
 * instead of this one.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct zh_chain_meta);
} zh_chain_meta SEC(".maps");

/* Layout digests of the pinned maps by map name, written by the agent. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct zh_map_name);
	__type(value, struct zh_map_layout);
} zh_map_layouts SEC(".maps");

#endif /* ZH_LIB_MAPS_H */
