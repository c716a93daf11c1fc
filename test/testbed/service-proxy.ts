// The testbed's stand-in for kube-proxy in nftables mode, one per node. It
// watches Services and EndpointSlices with client-node informers and keeps
// the node's `ip kube-proxy` and `ip6 kube-proxy` tables in the layout that
// kube-proxy-ruleset.ts documents, with chain names from
// kube-proxy-names.ts:
//
//   service-HASH-namespace/name/protocol/portName
//   external-HASH-namespace/name/protocol/portName
//   endpoint-HASH-namespace/name/protocol/portName__IP/port
//
// (IPv6 endpoint addresses with dots for colons). A Service port has an
// element in service-ips only while it has a ready endpoint of that family,
// so `nft -j list table ip kube-proxy` shows whether this node has a
// backend for it.
//
// Syncs follow kube-proxy's nftables mode. A full sync runs at start,
// after a failed sync and every fullSyncIntervalMs: it deletes both tables
// and rebuilds them in one `nft -f` transaction, where kube-proxy flushes
// and refills its table. Every other sync is partial: it renders the
// Service part of each table from the informers' caches, compares it with
// the model that was last applied, and sends only the changed chains, rules
// and elements in one transaction (kube-proxy-changes.ts). So a reader
// sees the old or the new rules and never a mix. One endpoint change is a
// few commands, so `nft monitor` readers such as the agent parse those
// instead of the whole table. Events that arrive while a sync runs are
// merged into the next one.

import { EventEmitter } from 'node:events';

import type { KubeConfig } from '@kubernetes/client-node';
import { type Logger, pino } from 'pino';

import { renderChainDeletion, renderChanges } from './kube-proxy-changes.js';
import { type FamilyRules, KUBE_PROXY_TABLE, type NoEndpointVerdict, renderDeletion, renderTable } from './kube-proxy-ruleset.js';
import { buildServiceRules, nftFamily, type ServiceRules } from './kube-proxy-service-rules.js';
import { NftBatch } from './nft-batch.js';
import { type ServiceInformers, watchServicesAndSlices } from './service-informers.js';
import { type IpFamily, servicePorts } from './service-ports.js';

// kube-proxy waits at least this long before it deletes a chain that a
// sync flushed (see kube-proxy-changes.ts).
const STALE_CHAIN_DELAY_MS = 1000;

export interface ServiceProxyOptions {
  kubeConfig: KubeConfig;
  // Node name, for logs.
  nodeName: string;
  // The node's network namespace, where the tables go.
  netns: string;
  // The node's own addresses, which accept NodePort traffic. An empty
  // ipv6 leaves the IPv6 table out.
  nodeAddresses: { ipv4: string; ipv6: string };
  // The cluster's pod CIDRs. Service traffic from other sources is
  // masqueraded.
  podCidrs: { ipv4: string[]; ipv6: string[] };
  // What packets to a Service port with no ready endpoint meet:
  // 'fall-through' (default) programs nothing for it, 'reject' programs
  // kube-proxy's reject path.
  noEndpointVerdict?: NoEndpointVerdict;
  // Wait after a failed sync before the next attempt, which is a full
  // sync. Defaults to 1000 ms.
  retryDelayMs?: number;
  // Time from one full sync to the next, in milliseconds. A full sync
  // repairs changes that something else made to the tables, such as a test
  // that edits them. kube-proxy's nftables mode has no such period. Defaults
  // to 30 000, so that a repair comes within a test run but full syncs stay
  // rare in measurements.
  fullSyncIntervalMs?: number;
  log?: Logger;
}

export interface SyncRecord {
  // 1 for the first applied sync.
  count: number;
  durationMs: number;
  // Service ports with at least one ready endpoint, both families.
  programmedPorts: number;
  endpoints: number;
  // "namespace/name" of the Services with a programmed port, sorted.
  services: string[];
  // Programmed ports per Service, both IP families counted, so a reader
  // can tell when a dual-stack Service has its rules in both.
  servicePorts: Record<string, number>;
  // Whether the sync rebuilt the tables rather than sending only changes.
  full: boolean;
  // Commands in the nft transaction.
  commands: number;
}

// Emits 'sync' with a SyncRecord after each applied sync. A partial sync
// that finds nothing to change sends no transaction and emits nothing.
export class ServiceProxy extends EventEmitter {
  // Syncs applied since start().
  syncCount = 0;
  // Syncs whose nft transaction failed, including deletions of stale chains.
  failedSyncCount = 0;
  // The last nft script applied, full or partial, for debugging.
  lastRuleset = '';

  private readonly options: Required<Omit<ServiceProxyOptions, 'log'>>;
  private readonly log: Logger;
  private readonly families: IpFamily[];
  private readonly services: ServiceInformers['services'];
  private readonly slices: ServiceInformers['slices'];
  // Runs the transactions. kube-proxy talks netlink from its own process,
  // and this keeps one nft process per node instead of one per sync.
  private readonly nft: NftBatch;

  private started = false;
  private stopped = false;
  // True when an event arrived after the current sync read the caches.
  private dirty = false;
  // The running sync loop, if any.
  private loop: Promise<void> | undefined;
  private waiters: (() => void)[] = [];

  // The Service part of each family's table as the last applied sync left
  // it. Undefined when the next sync must be a full one: before the first
  // sync and after a failure, when the tables may differ from any model.
  private applied: Map<IpFamily, ServiceRules> | undefined;
  // Set by fullSyncTimer, every fullSyncIntervalMs after a full sync.
  private fullSyncDue = false;
  private fullSyncTimer: NodeJS.Timeout | undefined;
  // Chains that a partial sync flushed, by family, with the
  // performance.now() of the flush. The loop deletes them once
  // STALE_CHAIN_DELAY_MS has passed.
  private readonly staleChains = new Map<IpFamily, Map<string, number>>();
  private staleChainTimer: NodeJS.Timeout | undefined;
  private staleChainsDue = false;

  constructor(options: ServiceProxyOptions) {
    super();
    this.options = { noEndpointVerdict: 'fall-through', retryDelayMs: 1000, fullSyncIntervalMs: 30_000, ...options };
    this.log = (options.log ?? pino({ level: 'warn' }, pino.destination(2))).child({ component: 'service-proxy', node: options.nodeName });
    this.families = options.nodeAddresses.ipv6 === '' ? ['ipv4'] : ['ipv4', 'ipv6'];
    this.nft = new NftBatch(options.netns);

    ({ services: this.services, slices: this.slices } = watchServicesAndSlices(options.kubeConfig, this.log, () => this.stopped, () => this.requestSync()));
  }

  // Lists Services and EndpointSlices, then applies the first sync. Like
  // kube-proxy, it writes no rules before both lists are in.
  async start(): Promise<void> {
    await Promise.all([this.services.start(), this.slices.start()]);
    this.started = true;
    this.log.info('started');
    this.requestSync();
    await this.synced();
  }

  // Stops watching, waits for a running sync and deletes both tables.
  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all([this.services.stop(), this.slices.stop()]);
    await this.loop;
    clearTimeout(this.fullSyncTimer);
    clearTimeout(this.staleChainTimer);
    try {
      await this.nft.apply(renderDeletion(['ipv4', 'ipv6']));
    } finally {
      await this.nft.close();
    }
    this.releaseWaiters();
    this.log.info('stopped');
  }

  // Resolves once every change received so far is in the tables. A change
  // made through the API server may not have arrived yet, so tests that
  // just wrote an object wait for the rule itself.
  synced(): Promise<void> {
    if (this.loop === undefined && !this.dirty && (this.started || this.stopped)) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private requestSync(): void {
    if (!this.started || this.stopped) return;
    this.dirty = true;
    this.startLoop();
  }

  private startLoop(): void {
    this.loop ??= this.runLoop().finally(() => {
      this.loop = undefined;
      this.releaseWaiters();
    });
  }

  private async runLoop(): Promise<void> {
    while ((this.dirty || this.staleChainsDue) && !this.stopped) {
      // One turn of the event loop, so that a burst of watch events read
      // from the socket together joins this sync.
      await new Promise((resolve) => setImmediate(resolve));

      if (!this.dirty) {
        this.staleChainsDue = false;
        await this.deleteStaleChains();
        continue;
      }
      this.dirty = false;

      try {
        await this.syncOnce();
      } catch (err) {
        this.failedSyncCount += 1;
        this.dirty = true;
        this.applied = undefined;
        this.log.error({ err, failedSyncs: this.failedSyncCount }, `nft sync failed, retrying with a full sync in ${this.options.retryDelayMs} ms`);
        await new Promise((resolve) => setTimeout(resolve, this.options.retryDelayMs));
      }
    }
  }

  private async syncOnce(): Promise<void> {
    const startedAt = performance.now();
    const services = this.services.list();
    const slices = this.slices.list();

    const rules: FamilyRules[] = this.families.map((family) => ({
      family,
      servicePorts: servicePorts(services, slices, family),
      nodePortAddresses: [family === 'ipv4' ? this.options.nodeAddresses.ipv4 : this.options.nodeAddresses.ipv6],
      podCidrs: family === 'ipv4' ? this.options.podCidrs.ipv4 : this.options.podCidrs.ipv6,
      noEndpointVerdict: this.options.noEndpointVerdict,
    }));
    const models = new Map(rules.map((family) => [family.family, buildServiceRules(family)]));

    const full = this.applied === undefined || this.fullSyncDue;
    const commands = full ? this.fullSyncCommands(rules, models) : this.partialSyncCommands(this.applied!, models);
    if (commands.length === 0) return;
    const script = commands.join('\n') + '\n';
    await this.nft.apply(script);

    this.applied = models;
    if (full) {
      this.fullSyncDue = false;
      this.scheduleFullSync();
    }
    this.lastRuleset = script;
    this.syncCount += 1;
    const programmed = rules.flatMap((family) => family.servicePorts).filter((port) => port.endpoints.length > 0);
    const record: SyncRecord = {
      count: this.syncCount,
      durationMs: performance.now() - startedAt,
      programmedPorts: programmed.length,
      endpoints: programmed.reduce((sum, port) => sum + port.endpoints.length, 0),
      services: [...new Set(programmed.map((port) => `${port.name.namespace}/${port.name.name}`))].sort(),
      servicePorts: countBy(programmed.map((port) => `${port.name.namespace}/${port.name.name}`)),
      full,
      commands: commands.length,
    };
    this.log.debug(record, 'synced');
    this.emit('sync', record);
  }

  // Deleting the tables also deletes the chains that waited for deletion.
  private fullSyncCommands(rules: FamilyRules[], models: Map<IpFamily, ServiceRules>): string[] {
    this.staleChains.clear();
    return rules.flatMap((family) => renderTable(family, models.get(family.family)!).trimEnd().split('\n'));
  }

  // Records the chains that the commands flush as stale. A chain that
  // comes back before its deletion is no longer stale.
  private partialSyncCommands(applied: Map<IpFamily, ServiceRules>, models: Map<IpFamily, ServiceRules>): string[] {
    const commands: string[] = [];
    const now = performance.now();

    for (const [family, model] of models) {
      const changes = renderChanges(tableOf(family), applied.get(family)!, model);
      commands.push(...changes.commands);

      let stale = this.staleChains.get(family);
      if (stale === undefined) this.staleChains.set(family, (stale = new Map()));
      for (const chain of model.chains.keys()) stale.delete(chain);
      for (const chain of changes.removedChains) stale.set(chain, now);
    }

    if ([...this.staleChains.values()].some((stale) => stale.size > 0)) this.scheduleStaleChainDeletion();
    return commands;
  }

  private scheduleFullSync(): void {
    clearTimeout(this.fullSyncTimer);
    this.fullSyncTimer = setTimeout(() => {
      this.fullSyncDue = true;
      this.requestSync();
    }, this.options.fullSyncIntervalMs);
    this.fullSyncTimer.unref();
  }

  private scheduleStaleChainDeletion(): void {
    if (this.staleChainTimer !== undefined) return;
    this.staleChainTimer = setTimeout(() => {
      this.staleChainTimer = undefined;
      if (this.stopped) return;
      this.staleChainsDue = true;
      this.startLoop();
    }, STALE_CHAIN_DELAY_MS);
    this.staleChainTimer.unref();
  }

  // Deletes the chains that have been stale for STALE_CHAIN_DELAY_MS, in
  // one transaction, and schedules the rest. A failure leaves them to the
  // next full sync, which deletes the whole tables.
  private async deleteStaleChains(): Promise<void> {
    const dueBefore = performance.now() - STALE_CHAIN_DELAY_MS;
    const due = new Map<IpFamily, string[]>();
    for (const [family, stale] of this.staleChains) {
      due.set(family, [...stale].filter(([, flushedAt]) => flushedAt <= dueBefore).map(([chain]) => chain));
    }
    const commands = [...due].flatMap(([family, chains]) => renderChainDeletion(tableOf(family), chains));

    if (commands.length > 0) {
      try {
        await this.nft.apply(commands.join('\n') + '\n');
        for (const [family, chains] of due) for (const chain of chains) this.staleChains.get(family)!.delete(chain);
        this.log.debug({ chains: commands.length }, 'deleted stale chains');
      } catch (err) {
        this.failedSyncCount += 1;
        this.log.error({ err, chains: commands.length, failedSyncs: this.failedSyncCount }, 'deleting stale chains failed, the next sync is a full one');
        this.applied = undefined;
        this.requestSync();
        return;
      }
    }
    if ([...this.staleChains.values()].some((stale) => stale.size > 0)) this.scheduleStaleChainDeletion();
  }

  private releaseWaiters(): void {
    if (this.loop !== undefined || (this.dirty && !this.stopped)) return;
    for (const resolve of this.waiters.splice(0)) resolve();
  }
}

function tableOf(family: IpFamily): string {
  return `${nftFamily(family)} ${KUBE_PROXY_TABLE}`;
}

function countBy(keys: string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const key of keys) counts[key] = (counts[key] ?? 0) + 1;
  return counts;
}
