// The user-space side of zh_fe_index, the cache of zh_frontends that the
// packet path reads without a helper call. A mirror of every bucket's keys
// decides what each bucket holds: its first two keys in the slots, and the
// overflow flag when more keys hash there, which sends the datapath to
// zh_frontends for that bucket. The invariant the datapath relies on is
// that a key of zh_frontends is in a slot of its bucket or its bucket
// overflows, because a plain miss in the index is final.
//
// Buckets go out through the map's shared mapping under the sequence lock
// that bpf/include/zerohold.h describes. Values are written little-endian,
// the byte order of every CPU zerohold builds for.

import { FrontendKey } from './layout.js';
import type { NativeMap } from './native.js';

export const BUCKET_SIZE = 64;
const WAYS = 2;
const SLOT_OFFSET = 8;
const SLOT_SIZE = 24;
const OVERFLOW_OFFSET = 4;
const VALID_OFFSET = 19;
const SERVICE_ID_OFFSET = 20;

// ZH_FE_HASH_M0..M4 in bpf/include/zerohold.h, one per key word.
const HASH_MULTIPLIERS = [
  0xe220a8397b1dcdafn,
  0x6e789e6aa1b965f4n,
  0x06c45d188009454fn,
  0xf88bb8a8724c81ecn,
  0x1b39896a51a8749bn,
];
const U64_MASK = (1n << 64n) - 1n;

// zh_fe_hash in bpf/lib/index.h: x = the sum of the key's five 32-bit
// words times their multipliers, modulo 2^64, and the hash is the low 32
// bits of (x >> 32) ^ (x >> 48).
export function frontendHash(key: Buffer): number {
  let x = 0n;
  for (let i = 0; i < FrontendKey.size / 4; i++) {
    x += BigInt(key.readUInt32LE(i * 4)) * HASH_MULTIPLIERS[i]!;
  }
  x &= U64_MASK;
  return Number(((x >> 32n) ^ (x >> 48n)) & 0xffffffffn);
}

export class FrontendIndex {
  readonly mask: number;
  // bucket -> key (hex) -> { key, service id }, in insertion order, so
  // the first keys of a bucket keep their slots while others come and go.
  private readonly buckets = new Map<number, Map<string, { key: Buffer; serviceId: number }>>();

  constructor(private readonly map: NativeMap) {
    const buckets = map.maxEntries;
    if (buckets < 1 || (buckets & (buckets - 1)) !== 0) {
      throw new RangeError(`zh_fe_index has ${buckets} buckets, expected a power of two`);
    }
    this.mask = buckets - 1;
  }

  bucketOf(key: Buffer): number {
    return frontendHash(key) & this.mask;
  }

  // Rewrites every bucket from entries, for a fresh or reused map.
  rebuild(entries: { key: Buffer; serviceId: number }[]): void {
    this.buckets.clear();
    for (const { key, serviceId } of entries) {
      this.remember(key, serviceId);
    }

    const all = Buffer.alloc(BUCKET_SIZE * (this.mask + 1));
    for (const [bucket] of this.buckets) {
      this.encode(bucket).copy(all, bucket * BUCKET_SIZE);
    }
    this.map.writeSeqlockedBatch(0, all);
  }

  set(key: Buffer, serviceId: number): void {
    this.map.writeSeqlocked(this.remember(key, serviceId), this.encode(this.bucketOf(key)));
  }

  delete(key: Buffer): void {
    const bucket = this.bucketOf(key);
    const keys = this.buckets.get(bucket);
    if (!keys?.delete(key.toString('hex'))) return;

    if (keys.size === 0) this.buckets.delete(bucket);
    this.map.writeSeqlocked(bucket, this.encode(bucket));
  }

  // Number of buckets whose keys do not all fit in the slots.
  get overflowingBuckets(): number {
    let count = 0;
    for (const keys of this.buckets.values()) {
      if (keys.size > WAYS) count++;
    }
    return count;
  }

  private remember(key: Buffer, serviceId: number): number {
    const bucket = this.bucketOf(key);
    let keys = this.buckets.get(bucket);
    if (!keys) {
      keys = new Map();
      this.buckets.set(bucket, keys);
    }
    keys.set(key.toString('hex'), { key: Buffer.from(key), serviceId });
    return bucket;
  }

  private encode(bucket: number): Buffer {
    const value = Buffer.alloc(BUCKET_SIZE);
    const keys = [...(this.buckets.get(bucket)?.values() ?? [])];

    keys.slice(0, WAYS).forEach(({ key, serviceId }, i) => {
      const slot = SLOT_OFFSET + i * SLOT_SIZE;
      key.copy(value, slot, 0, VALID_OFFSET);
      value[slot + VALID_OFFSET] = 1;
      value.writeUInt32LE(serviceId, slot + SERVICE_ID_OFFSET);
    });
    value.writeUInt32LE(keys.length > WAYS ? 1 : 0, OVERFLOW_OFFSET);
    return value;
  }
}
