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
// Every sync renders both tables from the informers' caches and applies
// them in one `nft -f` transaction, so a reader sees the old or the new
// rules and never a mix. Events that arrive while a sync runs are merged
// into the next one.

import { EventEmitter } from 'node:events';

import {
  ADD,
  CoreV1Api,
  DELETE,
  DiscoveryV1Api,
  type Informer,
  type KubeConfig,
  makeInformer,
  type ObjectCache,
  UPDATE,
  type V1EndpointSlice,
  type V1Service,
} from '@kubernetes/client-node';
import { type Logger, pino } from 'pino';

import { restartOnError } from '../../src/agent/informers.js';
import { runNft } from '../lib/topology.js';
import { type FamilyRules, type NoEndpointVerdict, renderDeletion, renderTransaction } from './kube-proxy-ruleset.js';
import { type IpFamily, servicePorts } from './service-ports.js';

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
  // Wait after a failed sync before the next attempt. Defaults to 1000 ms.
  retryDelayMs?: number;
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
}

// Emits 'sync' with a SyncRecord after each applied sync.
export class ServiceProxy extends EventEmitter {
  // Syncs applied since start().
  syncCount = 0;
  // Syncs whose nft transaction failed.
  failedSyncCount = 0;
  // The last nft script applied, for debugging.
  lastRuleset = '';

  private readonly options: Required<Omit<ServiceProxyOptions, 'log'>>;
  private readonly log: Logger;
  private readonly families: IpFamily[];
  private readonly services: Informer<V1Service> & ObjectCache<V1Service>;
  private readonly slices: Informer<V1EndpointSlice> & ObjectCache<V1EndpointSlice>;

  private started = false;
  private stopped = false;
  // True when an event arrived after the current sync read the caches.
  private dirty = false;
  // The running sync loop, if any.
  private loop: Promise<void> | undefined;
  private waiters: (() => void)[] = [];

  constructor(options: ServiceProxyOptions) {
    super();
    this.options = { noEndpointVerdict: 'fall-through', retryDelayMs: 1000, ...options };
    this.log = (options.log ?? pino({ level: 'warn' }, pino.destination(2))).child({ component: 'service-proxy', node: options.nodeName });
    this.families = options.nodeAddresses.ipv6 === '' ? ['ipv4'] : ['ipv4', 'ipv6'];

    const core = options.kubeConfig.makeApiClient(CoreV1Api);
    const discovery = options.kubeConfig.makeApiClient(DiscoveryV1Api);
    this.services = makeInformer(options.kubeConfig, '/api/v1/services', () => core.listServiceForAllNamespaces());
    this.slices = makeInformer(options.kubeConfig, '/apis/discovery.k8s.io/v1/endpointslices', () => discovery.listEndpointSliceForAllNamespaces());

    for (const informer of [this.services, this.slices] as Informer<V1Service | V1EndpointSlice>[]) {
      for (const verb of [ADD, UPDATE, DELETE] as const) informer.on(verb, () => this.requestSync());
    }
    restartOnError(this.services, this.log, 'Service', () => this.stopped);
    restartOnError(this.slices, this.log, 'EndpointSlice', () => this.stopped);
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
    await runNft(this.options.netns, renderDeletion(['ipv4', 'ipv6']));
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
    this.loop ??= this.runLoop().finally(() => {
      this.loop = undefined;
      this.releaseWaiters();
    });
  }

  private async runLoop(): Promise<void> {
    while (this.dirty && !this.stopped) {
      // One turn of the event loop, so that a burst of watch events read
      // from the socket together joins this sync.
      await new Promise((resolve) => setImmediate(resolve));
      this.dirty = false;

      try {
        await this.syncOnce();
      } catch (err) {
        this.failedSyncCount += 1;
        this.dirty = true;
        this.log.error({ err, failedSyncs: this.failedSyncCount }, `nft sync failed, retrying in ${this.options.retryDelayMs} ms`);
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
    const script = renderTransaction(rules);
    await runNft(this.options.netns, script);

    this.lastRuleset = script;
    this.syncCount += 1;
    const programmed = rules.flatMap((family) => family.servicePorts).filter((port) => port.endpoints.length > 0);
    const record: SyncRecord = {
      count: this.syncCount,
      durationMs: performance.now() - startedAt,
      programmedPorts: programmed.length,
      endpoints: programmed.reduce((sum, port) => sum + port.endpoints.length, 0),
      services: [...new Set(programmed.map((port) => `${port.name.namespace}/${port.name.name}`))].sort(),
    };
    this.log.debug(record, 'synced');
    this.emit('sync', record);
  }

  private releaseWaiters(): void {
    if (this.loop !== undefined || (this.dirty && !this.stopped)) return;
    for (const resolve of this.waiters.splice(0)) resolve();
  }
}
