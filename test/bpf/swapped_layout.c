// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * zh_services as an older or newer release might define it: the same type,
 * sizes and flags as bpf/lib/maps.h, but with state and flags swapped in
 * its value. libbpf would reuse its pin, so the agent must compare layouts.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

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

char LICENSE[] SEC("license") = "Dual BSD/GPL";
