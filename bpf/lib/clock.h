/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The coarse clock that stamps warm traffic, read cheaply per packet. */
#ifndef ZH_LIB_CLOCK_H
#define ZH_LIB_CLOCK_H

#include "lib/common.h"

/*
 * The last bpf_ktime_get_coarse_ns() reading and the jiffies value it was
 * taken at, shared by all CPUs. A global variable lives in the object's
 * .bss map, which the program addresses directly, without the lookup that
 * a per-CPU map cost each warm packet.
 */
struct zh_coarse_clock {
	__u64	jiffies;
	__u64	coarse_ns;
};

static struct zh_coarse_clock zh_coarse_clock;

/*
 * Returns bpf_ktime_get_coarse_ns(), calling the helper at most about once
 * per jiffy. The coarse clock advances when the timekeeper runs on a tick,
 * so the cached value should lag the helper's by one tick at most. The
 * verifier inlines bpf_jiffies64() on 64-bit JITs. A helper call cost
 * about 25 ns in a Linux 6.18 VM whose returns go through the SRSO "Safe
 * RET" thunk, more than the rest of the warm path.
 *
 * CPUs that see a new jiffies value at the same time may each refresh the
 * cache, and each writes a fresh reading. The time is written before the
 * jiffies value, so a reader that sees the new jiffies value also sees its
 * time on CPUs that keep stores in order, such as x86. Elsewhere it may
 * see the previous time, one tick older.
 */
static __always_inline __u64 zh_coarse_ns(void)
{
	__u64 jiffies = bpf_jiffies64();

	if (ZH_READ_ONCE(zh_coarse_clock.jiffies) != jiffies) {
		ZH_WRITE_ONCE(zh_coarse_clock.coarse_ns,
			      bpf_ktime_get_coarse_ns());
		ZH_WRITE_ONCE(zh_coarse_clock.jiffies, jiffies);
	}
	return ZH_READ_ONCE(zh_coarse_clock.coarse_ns);
}

#endif /* ZH_LIB_CLOCK_H */
