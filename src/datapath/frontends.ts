// The frontend table: which destination address, protocol and port belong
// to which service. Port 'any' matches every port of the address after the
// exact lookup missed. The datapath tries that second lookup only while
// zh_config counts at least one such entry, so the count here must follow
// the table.

import { addressToBytes, bytesToAddress } from './address.js';
import { FrontendIndex } from './frontend-index.js';
import { Config, FrontendKey, FrontendValue } from './layout.js';
import type { NativeMap } from './native.js';

export type L4Protocol = 'tcp' | 'udp';

export interface Frontend {
  address: string;
  protocol: L4Protocol;
  port: number | 'any';
}

const PROTOCOL_NUMBERS: Record<L4Protocol, number> = { tcp: 6, udp: 17 };

export function frontendToString(f: Frontend): string {
  const host = f.address.includes(':') ? `[${f.address}]` : f.address;
  return `${f.protocol}/${host}:${f.port}`;
}

export function encodeFrontendKey(f: Frontend): Buffer {
  const protocol = PROTOCOL_NUMBERS[f.protocol];
  if (protocol === undefined) {
    throw new TypeError(`invalid protocol ${JSON.stringify(f.protocol)} for frontend ${f.address}: expected "tcp" or "udp"`);
  }
  if (f.port !== 'any' && (!Number.isInteger(f.port) || f.port < 1 || f.port > 65535)) {
    throw new RangeError(`invalid port ${JSON.stringify(f.port)} for frontend ${f.address}: expected 1-65535 or "any"`);
  }

  const key = Buffer.alloc(FrontendKey.size);
  addressToBytes(f.address).copy(key, FrontendKey.members.addr);
  key.writeUInt16BE(f.port === 'any' ? 0 : f.port, FrontendKey.members.port);
  key[FrontendKey.members.proto!] = protocol;
  return key;
}

export function decodeFrontendKey(key: Buffer): Frontend {
  const m = FrontendKey.members;
  const port = key.readUInt16BE(m.port!);
  const protocolNumber = key[m.proto!];
  return {
    address: bytesToAddress(key.subarray(m.addr!, m.addr! + 16)),
    protocol: protocolNumber === 6 ? 'tcp' : 'udp',
    port: port === 0 ? 'any' : port,
  };
}

// zh_frontends is the authoritative table and zh_fe_index its call-free
// cache. Every change keeps the cache's invariant: a key is added to the
// table before the index and leaves the index before the table, so the
// index never names a key that the table lacks.
export class FrontendTable {
  readonly index: FrontendIndex;
  private anyPortCount = 0;

  // maxServiceId bounds the ids accepted, so no frontend can point past
  // the service tables.
  constructor(
    private readonly map: NativeMap,
    indexMap: NativeMap,
    private readonly config: NativeMap,
    private readonly maxServiceId: number,
  ) {
    this.index = new FrontendIndex(indexMap);

    // A pinned table survives agent restarts: index and count what it
    // already holds.
    const entries = this.list();
    this.index.rebuild(entries.map((e) => ({ key: encodeFrontendKey(e.frontend), serviceId: e.serviceId })));
    this.anyPortCount = entries.filter((entry) => entry.frontend.port === 'any').length;
    this.writeConfig();
  }

  set(frontend: Frontend, serviceId: number): void {
    if (!Number.isInteger(serviceId) || serviceId < 0 || serviceId > this.maxServiceId) {
      throw new RangeError(`invalid service id ${serviceId} for frontend ${frontendToString(frontend)}: expected 0-${this.maxServiceId}`);
    }

    const key = encodeFrontendKey(frontend);
    const isNew = this.map.lookup(key) === null;
    const value = Buffer.alloc(FrontendValue.size);
    value.writeUInt32LE(serviceId, FrontendValue.members.service_id);

    // Count the any-port entry before inserting it, so the datapath never
    // contains an any-port entry that its lookup would skip.
    if (isNew && frontend.port === 'any') {
      this.anyPortCount++;
      this.writeConfig();
    }
    this.map.update(key, value);
    this.index.set(key, serviceId);
  }

  get(frontend: Frontend): number | null {
    const value = this.map.lookup(encodeFrontendKey(frontend));
    return value === null ? null : value.readUInt32LE(FrontendValue.members.service_id);
  }

  delete(frontend: Frontend): boolean {
    const key = encodeFrontendKey(frontend);
    this.index.delete(key);
    const deleted = this.map.delete(key);
    if (deleted && frontend.port === 'any') {
      this.anyPortCount--;
      this.writeConfig();
    }
    return deleted;
  }

  list(): { frontend: Frontend; serviceId: number }[] {
    const { keys, values, count } = this.map.lookupBatch();
    const entries: { frontend: Frontend; serviceId: number }[] = [];
    for (let i = 0; i < count; i++) {
      const key = keys.subarray(i * FrontendKey.size, (i + 1) * FrontendKey.size);
      entries.push({
        frontend: decodeFrontendKey(key),
        serviceId: values.readUInt32LE(i * FrontendValue.size),
      });
    }
    return entries;
  }

  private writeConfig(): void {
    const value = Buffer.alloc(Config.size);
    value.writeUInt32LE(this.anyPortCount, Config.members.any_port_frontends);
    value.writeUInt32LE(this.index.mask, Config.members.index_mask);
    this.config.update(Buffer.alloc(4), value);
  }
}
