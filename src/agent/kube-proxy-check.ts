// The release check for nodes where kube-proxy runs in nftables mode.
// kube-proxy programs a Service's DNAT only after it has seen the same
// EndpointSlice as the agent, so a SYN that the agent re-injects before
// that misses the translation. waitProgrammed() resolves once this node's
// kube-proxy tables send every frontend to a Service chain.
//
// The copy of the tables (kube-proxy-maps.ts) follows a long-running
// `nft -j monitor`, so it receives kube-proxy's commit within milliseconds,
// as the latency test in test/agent/kube-proxy-check.test.ts prints. Each
// monitor starts with a full read: the monitor subscribes first, then
// `nft -j list` reads the maps, then the monitor lines that arrived
// meanwhile are applied on top of the listing. Every line is an idempotent
// add, delete or clear, so replaying lines older than the listing leaves
// the state that the newest lines describe.

import type { Logger } from 'pino';

import { type Frontend, frontendToString } from '../datapath/frontends.js';
import { type FamilyListing, KUBE_PROXY_TABLE, KubeProxyMaps, NFT_FAMILIES, NODEPORT_IPS, type NftFamily, normalizeAddress, SERVICE_IPS, SERVICE_NODEPORTS } from './kube-proxy-maps.js';
import { listNftSet } from './nft-command.js';
import { describeExit, type MonitorExit, NftMonitor } from './nft-monitor.js';
import type { BackendCheck } from './ports.js';
import { ProgrammedWaiters } from './programmed-waiter.js';

// A monitor that ran this long before it exited resets the restart backoff.
const STABLE_RUN_MS = 10_000;

export interface KubeProxyNftablesOptions {
  // Network namespace file of kube-proxy's tables, such as /run/netns/node1.
  // Unset: the agent's own namespace, as with hostNetwork in a cluster.
  netns?: string;
  log: Logger;
  // Delay before the attempt-th restart (from 1) of a monitor that exited.
  // Defaults to 100 ms, doubling up to 10 s.
  restartDelayMs?: (attempt: number) => number;
  // The node's addresses, on which the controller makes NodePort
  // frontends. One that kube-proxy serves no NodePorts on is skipped.
  nodeAddresses?: string[];
}

export class KubeProxyNftables implements BackendCheck {
  private readonly maps = new KubeProxyMaps();
  private readonly nodeAddresses: Set<string>;
  private readonly log: Logger;
  private readonly restartDelayMs: (attempt: number) => number;
  private readonly waiters: ProgrammedWaiters;

  // The current monitor, undefined while none runs.
  private monitor: NftMonitor | undefined;
  // Monitor lines that arrive while the listing runs, replayed after it.
  // null once the copy follows the monitor directly.
  private pendingEvents: unknown[][] | null = null;
  // True while the copy matches the kernel: the current monitor has
  // subscribed and its listing and pending lines are applied.
  private synced = false;
  // True from a successful start() until stop(); exited monitors restart
  // only while it is set.
  private running = false;
  private stopped = false;
  private restartAttempt = 0;
  // Set when the monitor is stopped to be restarted without a delay.
  private restartNow = false;
  private restartTimer: NodeJS.Timeout | undefined;

  constructor(private readonly options: KubeProxyNftablesOptions) {
    this.log = options.log;
    this.nodeAddresses = new Set((options.nodeAddresses ?? []).map((address) => normalizeAddress(address) ?? address));
    this.waiters = new ProgrammedWaiters(options.log);
    this.restartDelayMs = options.restartDelayMs ?? ((attempt) => Math.min(100 * 2 ** (attempt - 1), 10_000));
  }

  // Process id of the running `nft monitor`, if any.
  get monitorPid(): number | undefined {
    return this.monitor?.pid;
  }

  // Starts the monitor and reads the tables. Missing tables are not an
  // error: kube-proxy may not have switched to nftables mode yet. Rejects
  // if nft cannot run, with the monitor stopped.
  async start(): Promise<void> {
    if (this.running) throw new Error('kube-proxy nftables check is already started');
    this.stopped = false;

    try {
      await this.connect();
    } catch (err) {
      throw new Error(`cannot follow kube-proxy's nftables tables: ${(err as Error).message}. Install nftables (nft) in the agent image and run it with CAP_NET_ADMIN, or set release.kubeProxy to none`);
    }
    // stop() may have run while connect() waited.
    if (!this.stopped) this.running = true;
  }

  // Stops the monitor by its PID and resolves pending waits with false.
  async stop(): Promise<void> {
    this.stopped = true;
    this.running = false;
    clearTimeout(this.restartTimer);

    const monitor = this.monitor;
    this.monitor = undefined;
    this.synced = false;
    if (monitor !== undefined) await monitor.stop();

    this.waiters.cancel();
    this.log.info({ netns: this.options.netns }, 'kube-proxy nftables check stopped');
  }

  // Resolves true once kube-proxy has programmed every frontend on this
  // node, false after timeoutMs or on stop(). A frontend counts when
  // service-ips has its address, protocol and port, or when it is on a
  // NodePort address and service-nodeports has its protocol and port. One
  // with port 'any' counts once its address has any port of its protocol.
  // Rejects with a RangeError for an address that is not an IP address.
  // While some frontends are still missing, onProgrammed receives the ones
  // that have become programmed since its last call.
  waitProgrammed(frontends: Frontend[], timeoutMs: number, onProgrammed?: (frontends: Frontend[]) => void): Promise<boolean> {
    if (frontends.length === 0) return Promise.resolve(true);
    if (this.stopped) return Promise.resolve(false);
    try {
      if (this.synced && this.allProgrammed(frontends)) return Promise.resolve(true);
    } catch (err) {
      return Promise.reject(err);
    }

    const programmed = this.waiters.add(frontends, timeoutMs, onProgrammed, () => {
      const missing = this.synced ? frontends.filter((f) => !this.isDone(f)) : frontends;
      return { missing: missing.map(frontendToString), synced: this.synced };
    });
    this.resolveWaiters();
    return programmed;
  }

  private allProgrammed(frontends: Frontend[]): boolean {
    return frontends.every((frontend) => this.isDone(frontend));
  }

  private resolveWaiters(): void {
    if (this.synced) this.waiters.settle((frontend) => this.isDone(frontend));
  }

  // Whether the frontend needs no more waiting: kube-proxy programmed it,
  // or it is a NodePort on a node address that kube-proxy serves no
  // NodePorts on, such as a cloud node's ExternalIP, which no packet
  // reaches as its destination.
  private isDone(frontend: Frontend): boolean {
    if (this.maps.isProgrammed(frontend)) return true;
    const address = normalizeAddress(frontend.address);
    return address !== null && this.nodeAddresses.has(address) && !this.maps.servesNodePortsOn(address);
  }

  // Starts a monitor, waits for its subscription, then lists the maps.
  // On failure the monitor is stopped, and its exit schedules the next
  // attempt while running is set.
  private async connect(): Promise<void> {
    const monitor = new NftMonitor({
      netns: this.options.netns,
      onEvents: (events) => this.onEvents(monitor, events),
      onCacheMiss: (line) => this.onCacheMiss(monitor, line),
    });
    this.monitor = monitor;
    this.synced = false;
    this.pendingEvents = [];
    void monitor.exited.then((exit) => this.onMonitorExit(monitor, exit));

    try {
      const startedAt = performance.now();
      await monitor.subscribed();
      const listings = await Promise.all(NFT_FAMILIES.map((family) => this.listFamily(family)));
      if (this.monitor !== monitor) return;

      NFT_FAMILIES.forEach((family, i) => this.maps.replaceFamily(family, listings[i]!));
      for (const events of this.pendingEvents) this.applyEvents(events);
      this.pendingEvents = null;
      this.synced = true;
      this.log.info({ pid: monitor.pid, netns: this.options.netns, elements: this.maps.sizes(), ms: Math.round(performance.now() - startedAt) }, 'following kube-proxy nftables tables');
      this.resolveWaiters();
    } catch (err) {
      await monitor.stop();
      throw err;
    }
  }

  private async listFamily(family: NftFamily): Promise<FamilyListing> {
    const netns = this.options.netns;
    const [serviceIps, serviceNodePorts, nodePortIps] = await Promise.all([
      listNftSet(netns, family, KUBE_PROXY_TABLE, 'map', SERVICE_IPS),
      listNftSet(netns, family, KUBE_PROXY_TABLE, 'map', SERVICE_NODEPORTS),
      listNftSet(netns, family, KUBE_PROXY_TABLE, 'set', NODEPORT_IPS),
    ]);
    return { serviceIps, serviceNodePorts, nodePortIps };
  }

  private onEvents(monitor: NftMonitor, events: unknown[]): void {
    if (monitor !== this.monitor) return;
    if (this.pendingEvents !== null) {
      this.pendingEvents.push(events);
      return;
    }

    // One read usually contains a whole transaction, so waiters see its end
    // state rather than a step in between.
    this.applyEvents(events);
    this.resolveWaiters();
  }

  private applyEvents(events: unknown[]): void {
    const ignoredBefore = this.maps.ignoredElements;
    for (const event of events) this.maps.applyEvent(event);
    if (ignoredBefore === 0 && this.maps.ignoredElements > 0) {
      this.log.warn({ sample: events.slice(0, 1) }, 'skipping kube-proxy map elements in an unknown form, so their frontends stay unprogrammed');
    }
  }

  // nft dropped an element event of a set missing from its cache, and
  // misses that set's changes from now on. It drops a map from its cache
  // when the last rule that uses the map goes, as when kube-proxy's full
  // sync flushes the chain, unless the kernel announces the map again. A
  // new monitor lists the maps again.
  private onCacheMiss(monitor: NftMonitor, line: string): void {
    if (monitor !== this.monitor || !this.running) return;
    this.log.warn({ pid: monitor.pid, stderr: line }, 'nft monitor lost track of a kube-proxy map, restarting it');
    this.restartNow = true;
    void monitor.stop();
  }

  private onMonitorExit(monitor: NftMonitor, exit: MonitorExit): void {
    if (monitor !== this.monitor) return;
    this.monitor = undefined;
    this.synced = false;
    if (!this.running) return;

    if (Date.now() - monitor.startedAt >= STABLE_RUN_MS) this.restartAttempt = 0;
    this.restartAttempt += 1;
    // A restart for a cache miss goes at once: the monitor itself is fine.
    const delayMs = this.restartNow ? 0 : this.restartDelayMs(this.restartAttempt);
    this.restartNow = false;
    this.log.warn({ pid: monitor.pid, exit: describeExit(exit), unparsedLines: monitor.unparsedLines, attempt: this.restartAttempt, delayMs }, 'nft monitor exited, restarting');

    this.restartTimer = setTimeout(() => {
      this.connect().catch((err: Error) => this.log.error({ err, attempt: this.restartAttempt }, 'nft monitor restart failed'));
    }, delayMs);
  }
}
