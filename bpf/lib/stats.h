/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Counters that belong to no service. Per-service counters live in
 * struct zh_service_stats and are incremented in place by their users.
 */
#ifndef ZH_LIB_STATS_H
#define ZH_LIB_STATS_H

#include "lib/maps.h"

/* Increments zh_stats[index] on this CPU. */
static __always_inline void zh_count(enum zh_global_stat index)
{
	__u32 key = index;
	__u64 *counter;

	counter = bpf_map_lookup_elem(&zh_stats, &key);
	if (counter)
		*counter += 1;
}

#endif /* ZH_LIB_STATS_H */
