/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Reading zh_fe_index, the call-free cache of zh_frontends. zerohold.h
 * describes the layout and the sequence lock that user space writes under.
 */
#ifndef ZH_LIB_INDEX_H
#define ZH_LIB_INDEX_H

#include "lib/maps.h"

/*
 * zh_fe_hash is defined on host-order words of the key, and a key's words
 * are assembled here from 16-bit and 8-bit fields in little-endian order,
 * as src/datapath/frontend-index.ts writes them.
 */
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "zh_fe_index assumes a little-endian CPU"
#endif

/* Keeps the compiler from moving loads across the sequence checks. */
#define zh_barrier()	asm volatile("" ::: "memory")

/* The pad byte of a key's last word, where a slot keeps valid. */
#define ZH_FE_TAIL_VALID	(1U << 24)

enum zh_index_result {
	ZH_INDEX_MISS,		/* final: the key is in no frontend */
	ZH_INDEX_HIT,
	ZH_INDEX_UNKNOWN,	/* ask zh_frontends */
};

/*
 * A zh_frontend_key as words: the address as four words, the last word
 * (port, proto, pad zero), and the address words' part of the zh_fe_hash
 * sum, which the port-0 retry reuses. Nothing takes its address, so the
 * compiler keeps it in registers. Only the zh_frontends fallback stores
 * the key in memory.
 */
struct zh_fe_probe {
	__u32	addr[4];
	__u32	tail;
	__u64	addr_sum;
};

/*
 * Returns the address words' part of the zh_fe_hash sum. For an
 * IPv4-mapped address the first three words are constants, so the
 * compiler folds their products.
 */
static __always_inline __u64 zh_fe_hash_addr(const __u32 addr[4])
{
	return addr[0] * ZH_FE_HASH_M0 + addr[1] * ZH_FE_HASH_M1 +
	       addr[2] * ZH_FE_HASH_M2 + addr[3] * ZH_FE_HASH_M3;
}

/* Finishes zh_fe_hash from the address part and the key's last word. */
static __always_inline __u32 zh_fe_hash(__u64 addr_sum, __u32 tail)
{
	__u64 x = addr_sum + tail * ZH_FE_HASH_M4;

	return (x >> 32) ^ (x >> 48);
}

static __always_inline void zh_fe_probe_init(struct zh_fe_probe *probe,
					     __be16 port, __u8 proto)
{
	probe->tail = (__u32)port | (__u32)proto << 16;
	probe->addr_sum = zh_fe_hash_addr(probe->addr);
}

static __always_inline void zh_fe_probe_ipv4(struct zh_fe_probe *probe,
					     __be32 addr, __be16 port,
					     __u8 proto)
{
	probe->addr[0] = 0;
	probe->addr[1] = 0;
	probe->addr[2] = bpf_htonl(0x0000ffff);
	probe->addr[3] = addr;
	zh_fe_probe_init(probe, port, proto);
}

static __always_inline void zh_fe_probe_ipv6(struct zh_fe_probe *probe,
					     const struct in6_addr *addr,
					     __be16 port, __u8 proto)
{
	int i;

#pragma unroll
	for (i = 0; i < 4; i++)
		probe->addr[i] = addr->in6_u.u6_addr32[i];
	zh_fe_probe_init(probe, port, proto);
}

/*
 * Tells whether slot contains the probed key. The address's last word goes
 * first, because it tells most keys apart, while the first three words
 * are the same constants in every IPv4-mapped key.
 */
static __always_inline bool zh_slot_matches(const struct zh_fe_slot *slot,
					    const struct zh_fe_probe *probe,
					    __u32 tail_valid)
{
	const __u32 *addr = (const __u32 *)slot->addr;
	__u64 addr_lo = probe->addr[0] | (__u64)probe->addr[1] << 32;

	return addr[3] == probe->addr[3] && addr[2] == probe->addr[2] &&
	       *(const __u64 *)addr == addr_lo &&
	       *(const __u32 *)&slot->port == tail_valid;
}

/*
 * Tells whether no write overlapped the reads of bucket since seq was read:
 * seq was even and is unchanged.
 */
static __always_inline bool zh_bucket_unchanged(const struct zh_fe_bucket *bucket,
						__u32 seq)
{
	zh_barrier();
	return !(seq & 1) && ZH_READ_ONCE(bucket->seq) == seq;
}

/*
 * Looks the probed key up in its bucket. A reader that overlaps a write
 * sees an odd or changed seq and returns ZH_INDEX_UNKNOWN. The odd-seq
 * test waits until the slots are read, next to the recheck, because a
 * torn read is discarded either way and a miss then takes fewer branches.
 *
 * NOTE: this relies on loads not passing loads, which x86 guarantees; BPF
 * has no read barrier, so weakly ordered CPUs can in principle see a torn
 * bucket with an unchanged seq.
 */
static __always_inline enum zh_index_result
zh_index_lookup(const struct zh_fe_probe *probe, __u32 mask,
		__u32 *service_id)
{
	const struct zh_fe_bucket *bucket;
	__u32 idx, seq, tail_valid, id;
	bool overflow;
	int i;

	idx = zh_fe_hash(probe->addr_sum, probe->tail) & mask;
	bucket = bpf_map_lookup_elem(&zh_fe_index, &idx);
	if (!bucket)
		return ZH_INDEX_UNKNOWN;

	tail_valid = probe->tail | ZH_FE_TAIL_VALID;
	seq = ZH_READ_ONCE(bucket->seq);
	zh_barrier();

#pragma unroll
	for (i = 0; i < ZH_FE_INDEX_WAYS; i++) {
		if (!zh_slot_matches(&bucket->slot[i], probe, tail_valid))
			continue;
		id = bucket->slot[i].service_id;
		if (!zh_bucket_unchanged(bucket, seq))
			return ZH_INDEX_UNKNOWN;
		*service_id = id;
		return ZH_INDEX_HIT;
	}

	overflow = bucket->overflow;
	if (!zh_bucket_unchanged(bucket, seq))
		return ZH_INDEX_UNKNOWN;
	return overflow ? ZH_INDEX_UNKNOWN : ZH_INDEX_MISS;
}

#endif /* ZH_LIB_INDEX_H */
