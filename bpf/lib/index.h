/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Reading zh_fe_index, the call-free cache of zh_frontends. zerohold.h
 * describes the layout and the sequence lock that user space writes under.
 */
#ifndef ZH_LIB_INDEX_H
#define ZH_LIB_INDEX_H

#include "lib/maps.h"

/* Keeps the compiler from moving loads across the sequence checks. */
#define zh_barrier()	asm volatile("" ::: "memory")

enum zh_index_result {
	ZH_INDEX_MISS,		/* final: the key is in no frontend */
	ZH_INDEX_HIT,
	ZH_INDEX_UNKNOWN,	/* ask zh_frontends */
};

/* A zh_frontend_key as words; pad is zero. */
union zh_key_words {
	struct zh_frontend_key	key;
	__u32			words[5];
	__u64			addr64[2];
};

static __always_inline __u32 zh_fe_hash(const union zh_key_words *k)
{
	__u32 h = ZH_FE_HASH_SEED;
	int i;

#pragma unroll
	for (i = 0; i < 5; i++)
		h = (h ^ k->words[i]) * ZH_FE_HASH_PRIME;

	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

/* Tells whether slot holds k; tail is k's last word with valid set. */
static __always_inline bool zh_slot_matches(const struct zh_fe_slot *slot,
					    const union zh_key_words *k,
					    __u32 tail)
{
	const __u64 *addr = (const __u64 *)slot->addr;

	return addr[0] == k->addr64[0] && addr[1] == k->addr64[1] &&
	       *(const __u32 *)&slot->port == tail;
}

/*
 * Looks k up in its bucket. A reader that overlaps a write sees an odd or
 * changed seq and returns ZH_INDEX_UNKNOWN.
 *
 * NOTE: this relies on loads not passing loads, which x86 guarantees; BPF
 * has no read barrier, so weakly ordered CPUs can in principle see a torn
 * bucket with an unchanged seq.
 */
static __always_inline enum zh_index_result
zh_index_lookup(const union zh_key_words *k, __u32 mask, __u32 *service_id)
{
	enum zh_index_result result = ZH_INDEX_MISS;
	const struct zh_fe_bucket *bucket;
	union zh_key_words tail_key;
	__u32 idx, seq;

	idx = zh_fe_hash(k) & mask;
	bucket = bpf_map_lookup_elem(&zh_fe_index, &idx);
	if (!bucket)
		return ZH_INDEX_UNKNOWN;

	/* The slot's last word is port, proto and valid = 1. */
	tail_key.words[4] = k->words[4];
	tail_key.key.pad = 1;

	seq = ZH_READ_ONCE(bucket->seq);
	if (seq & 1)
		return ZH_INDEX_UNKNOWN;
	zh_barrier();

	if (zh_slot_matches(&bucket->slot[0], k, tail_key.words[4])) {
		*service_id = bucket->slot[0].service_id;
		result = ZH_INDEX_HIT;
	} else if (zh_slot_matches(&bucket->slot[1], k, tail_key.words[4])) {
		*service_id = bucket->slot[1].service_id;
		result = ZH_INDEX_HIT;
	} else if (bucket->overflow) {
		result = ZH_INDEX_UNKNOWN;
	}

	zh_barrier();
	if (ZH_READ_ONCE(bucket->seq) != seq)
		return ZH_INDEX_UNKNOWN;
	return result;
}

#endif /* ZH_LIB_INDEX_H */
