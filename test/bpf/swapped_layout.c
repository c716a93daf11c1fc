// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * zh_services as another release might define it: the same type, sizes and
 * flags as bpf/lib/maps.h, but with state and flags swapped in its value.
 * libbpf would reuse its pin, so the agent compares the recorded layouts.
 * zh_map_layouts is the same as in bpf/lib/maps.h, to record them in.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "zerohold.h"

struct swapped_service {
	__u32	flags;
	__u32	state;
	__u64	wake_interval_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct swapped_service);
} zh_services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct zh_map_name);
	__type(value, struct zh_map_layout);
} zh_map_layouts SEC(".maps");

char LICENSE[] SEC("license") = "Dual BSD/GPL";
