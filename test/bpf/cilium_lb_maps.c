// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Test stand-in for the load-balancer maps of Cilium v1.18.6 that
 * zerohold's chained mode reads: the service, backend and reverse NAT maps
 * of both families. The structs follow struct lb4_key, lb4_service,
 * lb4_backend, lb4_reverse_nat and their lb6 twins in Cilium's
 * bpf/lib/common.h, and the map specs follow bpf/lib/lb.h, with the
 * default max_entries of 65536 and BPF_F_NO_PREALLOC, which Cilium sets
 * unless the agent runs with --preallocate-bpf-maps. Tests load this
 * object, pin the maps and fill them as Cilium's agent does.
 *
 * The object has no programs: only the maps and their BTF matter.
 */
#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

#define CILIUM_LB_MAP_MAX_ENTRIES	65536

union cilium_v6addr {
	__u8 addr[16];
	__u32 p[4];
};

struct lb4_key {
	__be32 address;
	__be16 dport;
	__u16 backend_slot;	/* 0 for the master entry */
	__u8 proto;		/* 0 for any protocol */
	__u8 scope;		/* 0 external, 1 internal */
	__u8 pad[2];
};

struct lb4_service {
	__u32 backend_id;	/* slot: backend id; master: affinity or L7 port */
	__u16 count;		/* master: number of selectable backend slots */
	__be16 rev_nat_index;	/* network byte order, as Cilium's agent writes it */
	__u8 flags;
	__u8 flags2;
	__u16 qcount;		/* master: number of quarantined slots */
};

struct lb4_backend {
	__be32 address;
	__be16 port;
	__u8 proto;
	__u8 flags;		/* 0 active, 1 terminating, 2 quarantined, 3 maintenance */
	__u16 cluster_id;
	__u8 zone;
	__u8 pad;
};

struct lb4_reverse_nat {
	__be32 address;
	__be16 port;
} __attribute__((packed));

struct lb6_key {
	union cilium_v6addr address;
	__be16 dport;
	__u16 backend_slot;
	__u8 proto;
	__u8 scope;
	__u8 pad[2];
};

struct lb6_service {
	__u32 backend_id;
	__u16 count;
	__be16 rev_nat_index;
	__u8 flags;
	__u8 flags2;
	__u16 qcount;
};

struct lb6_backend {
	union cilium_v6addr address;
	__be16 port;
	__u8 proto;
	__u8 flags;
	__u16 cluster_id;
	__u8 zone;
	__u8 pad;
};

struct lb6_reverse_nat {
	union cilium_v6addr address;
	__be16 port;
} __attribute__((packed));

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct lb4_key);
	__type(value, struct lb4_service);
	__uint(max_entries, CILIUM_LB_MAP_MAX_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} cilium_lb4_services_v2 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct lb4_backend);
	__uint(max_entries, CILIUM_LB_MAP_MAX_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} cilium_lb4_backends_v3 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __be16);
	__type(value, struct lb4_reverse_nat);
	__uint(max_entries, CILIUM_LB_MAP_MAX_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} cilium_lb4_reverse_nat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct lb6_key);
	__type(value, struct lb6_service);
	__uint(max_entries, CILIUM_LB_MAP_MAX_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} cilium_lb6_services_v2 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct lb6_backend);
	__uint(max_entries, CILIUM_LB_MAP_MAX_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} cilium_lb6_backends_v3 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __be16);
	__type(value, struct lb6_reverse_nat);
	__uint(max_entries, CILIUM_LB_MAP_MAX_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} cilium_lb6_reverse_nat SEC(".maps");

char _license[] SEC("license") = "Dual BSD/GPL";
