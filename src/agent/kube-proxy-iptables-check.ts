// The release check for nodes where kube-proxy runs in iptables mode.
// Until kube-proxy's next sync after the Ready endpoint, its filter table
// rejects the Service with "has no endpoints", so a SYN that the agent
// re-injects before then gets an ICMP port unreachable, and the client
// fails with "connection refused" instead of retransmitting.
// waitProgrammed() resolves once this node's tables send every frontend to
// a Service chain (kube-proxy-iptables-rules.ts).
//
// The tables are read with iptables-save while a release waits, every
// pollIntervalMs, and not at all otherwise. iptables has no change feed
// that both of its backends offer. kube-proxy writes to the nf_tables or
// the legacy backend, whichever the node uses, so the check reads the one
// that has kube-proxy's KUBE-SERVICES chain, as kube-proxy's own image
// decides between them.

import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

import type { Logger } from 'pino';

import { type Frontend, frontendToString } from '../datapath/frontends.js';
import { hasKubeServicesChain, IptablesFrontends } from './kube-proxy-iptables-rules.js';
import type { BackendCheck } from './ports.js';
import type { ProgrammedWaiter } from './programmed-waiter.js';

const execFileAsync = promisify(execFile);

// kube-proxy writes one or a few rules per Service port and endpoint, so a
// large cluster prints megabytes.
const MAX_OUTPUT_BYTES = 256 << 20;
const COMMAND_TIMEOUT_MS = 30_000;

type Family = 'ipv4' | 'ipv6';
type IptablesBackend = 'nft' | 'legacy';

const SAVE_COMMANDS: Record<Family, string> = { ipv4: 'iptables', ipv6: 'ip6tables' };

export interface KubeProxyIptablesOptions {
  // Network namespace file of kube-proxy's tables, such as /run/netns/node1.
  // Unset: the agent's own namespace, as with hostNetwork in a cluster.
  netns?: string;
  log: Logger;
  // Time between two reads while a release waits. Defaults to 50 ms.
  pollIntervalMs?: number;
}

export class KubeProxyIptables implements BackendCheck {
  private readonly log: Logger;
  private readonly pollIntervalMs: number;
  private readonly waiters = new Set<ProgrammedWaiter>();
  // The backend with kube-proxy's chains, per family, once found.
  private readonly backends = new Map<Family, IptablesBackend>();
  private polling = false;
  private stopped = false;
  // The message of the last failed read that was logged, so that a poll
  // every 50 ms logs a lasting failure once.
  private loggedError: string | undefined;

  constructor(private readonly options: KubeProxyIptablesOptions) {
    this.log = options.log;
    this.pollIntervalMs = options.pollIntervalMs ?? 50;
  }

  // Reads the IPv4 tables once, so that a missing iptables-save stops the
  // agent at start rather than delaying every release to its timeout.
  async start(): Promise<void> {
    const rules = await this.read('ipv4');
    this.log.info({ backend: this.backends.get('ipv4') ?? 'not found yet', ...rules.sizes() }, "reading kube-proxy's iptables rules before each release");
  }

  waitProgrammed(frontends: Frontend[], timeoutMs: number, onProgrammed?: (frontends: Frontend[]) => void): Promise<boolean> {
    if (frontends.length === 0) return Promise.resolve(true);
    if (this.stopped) return Promise.resolve(false);

    return new Promise((resolve) => {
      const waiter: ProgrammedWaiter = {
        frontends,
        resolve,
        onProgrammed,
        reported: new Set(),
        timer: setTimeout(() => {
          this.waiters.delete(waiter);
          const missing = frontends.filter((frontend) => !waiter.reported.has(frontend)).map(frontendToString);
          this.log.info({ missing, timeoutMs }, 'kube-proxy has not programmed the frontends in time');
          resolve(false);
        }, timeoutMs),
      };
      this.waiters.add(waiter);
      this.startPolling();
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const waiter of this.waiters) {
      clearTimeout(waiter.timer);
      waiter.resolve(false);
    }
    this.waiters.clear();
  }

  private startPolling(): void {
    if (this.polling) return;
    this.polling = true;
    void this.poll().finally(() => {
      this.polling = false;
    });
  }

  // Reads the tables of the families that the waiters need, settles the
  // waiters whose frontends are all programmed, and repeats while any wait.
  private async poll(): Promise<void> {
    while (this.waiters.size > 0 && !this.stopped) {
      const families = new Set<Family>();
      for (const waiter of this.waiters) {
        for (const frontend of waiter.frontends) families.add(frontend.address.includes(':') ? 'ipv6' : 'ipv4');
      }

      const rules = new Map<Family, IptablesFrontends>();
      try {
        for (const family of families) rules.set(family, await this.read(family));
        this.loggedError = undefined;
      } catch (err) {
        if ((err as Error).message !== this.loggedError) {
          this.log.warn({ err }, "reading kube-proxy's iptables rules failed, trying again");
          this.loggedError = (err as Error).message;
        }
      }

      for (const waiter of [...this.waiters]) this.settle(waiter, rules);
      if (this.waiters.size > 0) await new Promise((resolve) => setTimeout(resolve, this.pollIntervalMs));
    }
  }

  private settle(waiter: ProgrammedWaiter, rules: Map<Family, IptablesFrontends>): void {
    const programmed = waiter.frontends.filter((frontend) => rules.get(frontend.address.includes(':') ? 'ipv6' : 'ipv4')?.isProgrammed(frontend) ?? false);
    if (programmed.length === waiter.frontends.length) {
      clearTimeout(waiter.timer);
      this.waiters.delete(waiter);
      waiter.resolve(true);
      return;
    }

    const fresh = programmed.filter((frontend) => !waiter.reported.has(frontend));
    for (const frontend of fresh) waiter.reported.add(frontend);
    if (fresh.length > 0) waiter.onProgrammed?.(fresh);
  }

  // Reads the nat and filter tables of one family from kube-proxy's
  // backend, or from nf_tables while no backend has its chains yet.
  private async read(family: Family): Promise<IptablesFrontends> {
    let backend = this.backends.get(family);
    if (backend === undefined) {
      for (const candidate of ['nft', 'legacy'] as const) {
        if (hasKubeServicesChain(await this.save(family, candidate, 'nat'))) {
          backend = candidate;
          this.backends.set(family, candidate);
          this.log.info({ family, backend }, "found kube-proxy's iptables rules");
          break;
        }
      }
    }

    const [nat, filter] = await Promise.all([this.save(family, backend ?? 'nft', 'nat'), this.save(family, backend ?? 'nft', 'filter')]);
    return IptablesFrontends.parse(nat, filter);
  }

  // Runs iptables-save for one table, in the namespace of the tables.
  private async save(family: Family, backend: IptablesBackend, table: 'nat' | 'filter'): Promise<string> {
    const command = `${SAVE_COMMANDS[family]}-${backend}-save`;
    const args = ['-t', table];
    const [program, programArgs] = this.options.netns === undefined ? [command, args] : ['nsenter', [`--net=${this.options.netns}`, command, ...args]];
    try {
      const { stdout } = await execFileAsync(program, programArgs, { timeout: COMMAND_TIMEOUT_MS, maxBuffer: MAX_OUTPUT_BYTES });
      return stdout;
    } catch (err) {
      const e = err as Error & { stderr?: string };
      throw new Error(`${command} -t ${table} failed: ${e.stderr?.trim() || e.message}`);
    }
  }
}
