/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The coarse clock that stamps warm traffic, read cheaply per packet. */
#ifndef ZH_LIB_CLOCK_H
#define ZH_LIB_CLOCK_H

#include "lib/maps.h"

/*
 * Returns bpf_ktime_get_coarse_ns(), calling the helper at most once per
 * jiffy on each CPU. The coarse clock advances when the timekeeper runs on
 * a tick, so the cached value should lag the helper's by one tick at most.
 * The verifier inlines bpf_jiffies64() on 64-bit JITs. A helper call cost
 * about 25 ns in a Linux 6.18 VM whose returns go through the SRSO "Safe
 * RET" thunk, more than the rest of the warm path.
 */
static __always_inline __u64 zh_coarse_ns(void)
{
	struct zh_coarse_clock *clock;
	__u32 zero = 0;
	__u64 jiffies;

	clock = bpf_map_lookup_elem(&zh_coarse_clock, &zero);
	if (!clock)
		return bpf_ktime_get_coarse_ns();

	jiffies = bpf_jiffies64();
	if (clock->jiffies != jiffies) {
		clock->coarse_ns = bpf_ktime_get_coarse_ns();
		clock->jiffies = jiffies;
	}
	return clock->coarse_ns;
}

#endif /* ZH_LIB_CLOCK_H */
