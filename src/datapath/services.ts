// Per-service state and counters. The state word is the gate: COLD keeps
// flow openers, WARM passes everything and counts activity. Flipping it is
// one map update, so every frontend of a service opens at the same instant.

import {
  GLOBAL_STAT_COUNT,
  HoldBudget,
  SERVICE_STAT_FIELDS,
  Service,
  ServiceFlags,
  ServiceState,
  type ServiceStatField,
  type ServiceStateValue,
} from './layout.js';
import type { NativeMap } from './native.js';

export type ServiceStateName = 'unmanaged' | 'warm' | 'cold';

const STATE_VALUES: Record<ServiceStateName, ServiceStateValue> = {
  unmanaged: ServiceState.Unmanaged,
  warm: ServiceState.Warm,
  cold: ServiceState.Cold,
};

export interface ServiceSettings {
  state: ServiceStateName;
  // At most one wake event per interval; 0 signals every flow opener.
  wakeIntervalMs: number;
  // Drop flow openers without holding them, as drop-and-retransmit
  // designs do; used to compare against holding.
  dropOnly?: boolean;
  // The rate of the hold budget (bpf/lib/hold_budget.h): flow openers
  // per second, and at most this many at once, that the service may add
  // to the held ring while the ring is more than half full. 0 means no
  // budget, and undefined keeps the rate that the service has.
  holdRate?: number;
}

export type ServiceCounters = Record<ServiceStatField, bigint>;

// zh_hold_budget.rate is a __u32.
export const MAX_HOLD_RATE = 0xffffffff;

function indexKey(id: number): Buffer {
  const key = Buffer.alloc(4);
  key.writeUInt32LE(id);
  return key;
}

export class ServiceTable {
  // The hold rate of each service id as this table last wrote it, so
  // that rewriting an unchanged rate costs no syscall and keeps the
  // bucket's tokens.
  private readonly holdRates = new Map<number, number>();

  constructor(
    private readonly services: NativeMap,
    private readonly budgets: NativeMap,
    private readonly stats: NativeMap,
    private readonly globalStats: NativeMap,
  ) {}

  get maxServiceId(): number {
    return this.services.maxEntries - 1;
  }

  set(id: number, settings: ServiceSettings): void {
    this.checkId(id);
    const state = STATE_VALUES[settings.state];
    if (state === undefined) {
      throw new TypeError(`invalid state ${JSON.stringify(settings.state)} for service ${id}: expected "unmanaged", "warm" or "cold"`);
    }
    if (!Number.isFinite(settings.wakeIntervalMs) || settings.wakeIntervalMs < 0) {
      throw new RangeError(`invalid wake interval ${settings.wakeIntervalMs} ms for service ${id}: expected a number >= 0`);
    }
    if (settings.holdRate !== undefined) checkHoldRate(id, settings.holdRate);

    const value = Buffer.alloc(Service.size);
    value.writeUInt32LE(state, Service.members.state);
    value.writeUInt32LE(settings.dropOnly ? ServiceFlags.DropOnly : 0, Service.members.flags);
    value.writeBigUInt64LE(BigInt(Math.round(settings.wakeIntervalMs * 1e6)), Service.members.wake_interval_ns);
    this.services.update(indexKey(id), value);
    if (settings.holdRate !== undefined) this.setHoldRate(id, settings.holdRate);
  }

  // Sets the rate of a service's hold budget. A new rate restarts the
  // bucket full, and the rate that this table wrote last is not written
  // again.
  setHoldRate(id: number, rate: number): void {
    this.checkId(id);
    checkHoldRate(id, rate);
    if (this.holdRates.get(id) === rate) return;

    const value = Buffer.alloc(HoldBudget.size);
    value.writeUInt32LE(rate, HoldBudget.members.rate);
    this.budgets.update(indexKey(id), value);
    this.holdRates.set(id, rate);
  }

  get(id: number): ServiceSettings {
    this.checkId(id);
    const value = this.services.lookup(indexKey(id));
    if (value === null) {
      throw new Error(`service ${id} not found in zh_services, an array map with every index below ${this.services.maxEntries}`);
    }

    const state = value.readUInt32LE(Service.members.state);
    const name = (Object.keys(STATE_VALUES) as ServiceStateName[]).find((k) => STATE_VALUES[k] === state);
    return {
      state: name ?? 'unmanaged',
      wakeIntervalMs: Number(value.readBigUInt64LE(Service.members.wake_interval_ns)) / 1e6,
      dropOnly: (value.readUInt32LE(Service.members.flags) & ServiceFlags.DropOnly) !== 0,
      holdRate: this.budgets.lookup(indexKey(id))?.readUInt32LE(HoldBudget.members.rate) ?? 0,
    };
  }

  // Changes only the state word, keeping the other settings.
  setState(id: number, state: ServiceStateName): void {
    this.set(id, { ...this.get(id), state });
  }

  // Sums the per-CPU counters of a service. warm_last_seen_ns is a time,
  // not a count, so it takes the latest CPU's value instead.
  readCounters(id: number): ServiceCounters {
    this.checkId(id);
    const perCpu = this.stats.lookup(indexKey(id));
    if (perCpu === null) {
      throw new Error(`service ${id} is missing from zh_svc_stats`);
    }
    return sumPerCpu(perCpu, this.stats.valueSize);
  }

  // Zeroes the counters of a service, for a service id that is reused.
  // Its hold budget restarts full at the next rate written, even an
  // unchanged one, so the new service does not inherit an empty bucket.
  resetCounters(id: number): void {
    this.checkId(id);
    this.stats.update(indexKey(id), Buffer.alloc(this.stats.valueBufferSize));
    this.holdRates.delete(id);
  }

  readGlobalCounters(): bigint[] {
    const totals: bigint[] = [];
    for (let i = 0; i < GLOBAL_STAT_COUNT; i++) {
      const perCpu = this.globalStats.lookup(indexKey(i));
      let sum = 0n;
      for (let cpu = 0; perCpu !== null && cpu * 8 < perCpu.length; cpu++) {
        sum += perCpu.readBigUInt64LE(cpu * 8);
      }
      totals.push(sum);
    }
    return totals;
  }

  private checkId(id: number): void {
    if (!Number.isInteger(id) || id < 0 || id > this.maxServiceId) {
      throw new RangeError(`invalid service id ${id}: expected 0-${this.maxServiceId}`);
    }
  }
}

// The counters of two services together, as for a workload with several.
// warm_last_seen_ns takes the later time.
export function addCounters(a: ServiceCounters, b: ServiceCounters): ServiceCounters {
  const sum = { ...a };
  for (const field of SERVICE_STAT_FIELDS) {
    if (field !== 'warm_last_seen_ns') sum[field] = a[field] + b[field];
    else if (b[field] > a[field]) sum[field] = b[field];
  }
  return sum;
}

// Per-CPU values come one per possible CPU, each rounded up to 8 bytes.
export function sumPerCpu(perCpu: Buffer, valueSize: number): ServiceCounters {
  const stride = (valueSize + 7) & ~7;
  const counters = Object.fromEntries(SERVICE_STAT_FIELDS.map((f) => [f, 0n])) as ServiceCounters;

  for (let offset = 0; offset + stride <= perCpu.length; offset += stride) {
    SERVICE_STAT_FIELDS.forEach((field, i) => {
      const value = perCpu.readBigUInt64LE(offset + i * 8);
      if (field === 'warm_last_seen_ns') {
        if (value > counters[field]) counters[field] = value;
      } else {
        counters[field] += value;
      }
    });
  }
  return counters;
}

function checkHoldRate(id: number, rate: number): void {
  if (!Number.isInteger(rate) || rate < 0 || rate > MAX_HOLD_RATE) {
    throw new RangeError(`invalid hold rate ${rate} for service ${id}: expected an integer from 0 to ${MAX_HOLD_RATE} flow openers per second`);
  }
}
