/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The four maps that a host datapath declares for zerohold's chained mode,
 * with exactly the specs that bpf/README.md requires of every declaration.
 * The test hosts include it, so both match the contract in the same way.
 */
#ifndef ZH_TEST_CHAIN_HOST_MAPS_H
#define ZH_TEST_CHAIN_HOST_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "zerohold.h"

/* PROG_ARRAY maps take sizes, not BTF types, for key and value. */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} zh_chain_xdp SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} zh_chain_tc SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct zh_chain_meta);
} zh_chain_meta SEC(".maps");

/* Service ids that the zerohold agent manages. Values are reserved, 0. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, ZH_CHAIN_MAX_SERVICES);
	__type(key, __u32);
	__type(value, __u32);
} zh_chain_svcs SEC(".maps");

#endif /* ZH_TEST_CHAIN_HOST_MAPS_H */
