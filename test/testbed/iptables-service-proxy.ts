// The testbed's stand-in for kube-proxy in iptables mode, one per node, in
// place of ServiceProxy when a testbed runs in that mode. It watches
// Services and EndpointSlices and writes iptables-ruleset.ts's rules for
// each family with one `iptables-nft-restore --noflush` per sync, as
// kube-proxy runs iptables-restore. While a Service port has no ready
// endpoint, the filter table rejects it, so a SYN that reaches the node
// before the sync gets an ICMP port unreachable, as with kube-proxy.
//
// syncDelayMs stands for kube-proxy's sync latency on a large node, where
// iptables-restore of tens of thousands of rules takes that long, or for
// its minSyncPeriod after a recent sync. Each sync waits that long after
// the change that started it, and changes meanwhile join it.

import { spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';

import { type Logger, pino } from 'pino';

import { netnsPath } from '../lib/netns.js';
import { renderBaseRules, renderServiceRules } from './iptables-ruleset.js';
import { type ServiceInformers, watchServicesAndSlices } from './service-informers.js';
import type { ServiceProxyOptions } from './service-proxy.js';
import { type IpFamily, servicePorts } from './service-ports.js';

const RESTORE_COMMANDS: Record<IpFamily, string> = { ipv4: 'iptables-nft-restore', ipv6: 'ip6tables-nft-restore' };

// The options of the nftables stand-in that apply here, and the delay.
export interface IptablesServiceProxyOptions extends Pick<ServiceProxyOptions, 'kubeConfig' | 'nodeName' | 'netns' | 'nodeAddresses' | 'podCidrs' | 'log'> {
  // Wait between a change and the sync that writes it. Defaults to 0.
  syncDelayMs?: number;
}

export interface IptablesSyncRecord {
  count: number;
  durationMs: number;
  // "namespace/name" of the Services with a port that has endpoints.
  services: string[];
  // When each family's iptables-restore returned, as Unix milliseconds.
  // The IPv4 rules are in force before the IPv6 ones are written.
  appliedUnixMs: Partial<Record<IpFamily, number>>;
}

// Emits 'sync' with an IptablesSyncRecord after each applied sync.
export class IptablesServiceProxy extends EventEmitter {
  syncCount = 0;
  failedSyncCount = 0;

  private readonly log: Logger;
  private readonly families: IpFamily[];
  private readonly services: ServiceInformers['services'];
  private readonly slices: ServiceInformers['slices'];
  // The Service and endpoint chains that the last sync of each family left.
  private readonly chains = new Map<IpFamily, Set<string>>();
  private started = false;
  private stopped = false;
  private dirty = false;
  private loop: Promise<void> | undefined;
  private waiters: (() => void)[] = [];

  constructor(private readonly options: IptablesServiceProxyOptions) {
    super();
    this.log = (options.log ?? pino({ level: 'warn' }, pino.destination(2))).child({ component: 'iptables-service-proxy', node: options.nodeName });
    this.families = options.nodeAddresses.ipv6 === '' ? ['ipv4'] : ['ipv4', 'ipv6'];

    ({ services: this.services, slices: this.slices } = watchServicesAndSlices(options.kubeConfig, this.log, () => this.stopped, () => this.requestSync()));
  }

  // Writes the jumps from the built-in chains, lists Services and
  // EndpointSlices, and applies the first sync.
  async start(): Promise<void> {
    for (const family of this.families) await this.restore(family, renderBaseRules());
    await Promise.all([this.services.start(), this.slices.start()]);
    this.started = true;
    this.requestSync();
    await this.synced();
  }

  // Stops watching and waits for a running sync. The rules go with the
  // node's namespace.
  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all([this.services.stop(), this.slices.stop()]);
    await this.loop;
    for (const resolve of this.waiters.splice(0)) resolve();
  }

  synced(): Promise<void> {
    if (this.loop === undefined && !this.dirty) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private requestSync(): void {
    if (!this.started || this.stopped) return;
    this.dirty = true;
    this.loop ??= this.runLoop().finally(() => {
      this.loop = undefined;
      // A change that came after the loop's last check starts a new loop.
      if (this.dirty && !this.stopped) this.requestSync();
      else for (const resolve of this.waiters.splice(0)) resolve();
    });
  }

  private async runLoop(): Promise<void> {
    while (this.dirty && !this.stopped) {
      await new Promise((resolve) => setTimeout(resolve, this.options.syncDelayMs ?? 0));
      this.dirty = false;
      try {
        await this.syncOnce();
      } catch (err) {
        this.failedSyncCount += 1;
        this.dirty = true;
        this.log.error({ err }, 'iptables sync failed, retrying');
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
    }
  }

  private async syncOnce(): Promise<void> {
    const startedAt = performance.now();
    const services = this.services.list();
    const slices = this.slices.list();
    const programmed = new Set<string>();
    const appliedUnixMs: Partial<Record<IpFamily, number>> = {};

    for (const family of this.families) {
      const ports = servicePorts(services, slices, family);
      const rendered = renderServiceRules({ family, servicePorts: ports, podCidrs: this.options.podCidrs[family] }, this.chains.get(family) ?? new Set());
      await this.restore(family, rendered.restore);
      appliedUnixMs[family] = Date.now();
      this.chains.set(family, rendered.serviceChains);
      for (const port of ports) if (port.endpoints.length > 0) programmed.add(`${port.name.namespace}/${port.name.name}`);
    }

    this.syncCount += 1;
    const record: IptablesSyncRecord = { count: this.syncCount, durationMs: performance.now() - startedAt, services: [...programmed].sort(), appliedUnixMs };
    this.emit('sync', record);
  }

  private restore(family: IpFamily, input: string): Promise<void> {
    const command = RESTORE_COMMANDS[family];
    return new Promise((resolve, reject) => {
      const child = spawn('nsenter', [`--net=${netnsPath(this.options.netns)}`, command, '--noflush'], { stdio: ['pipe', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      child.on('error', reject);
      child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${command} in ${this.options.netns} failed (${code}): ${stderr.trim()}`))));
      child.stdin.end(input);
    });
  }
}
