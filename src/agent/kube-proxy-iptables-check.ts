// The release check for nodes where kube-proxy runs in iptables mode.
// Until kube-proxy's next sync after the Ready endpoint, its filter table
// rejects the Service with "has no endpoints", so a SYN that the agent
// re-injects before then gets an ICMP port unreachable, and the client
// fails with "connection refused" instead of retransmitting.
// waitProgrammed() resolves once this node's tables send every frontend to
// a Service chain (kube-proxy-iptables-rules.ts).
//
// kube-proxy's Service chains are listed with `iptables -S` while a
// release waits, every pollIntervalMs, and not at all otherwise. iptables
// has no change feed that both of its backends offer. kube-proxy writes to
// the nf_tables or the legacy backend, whichever the node uses, so the
// check reads the first one that has kube-proxy's KUBE-SERVICES chain,
// trying nf_tables first.
// NOTE: kube-proxy's image compares the rule counts of both backends
// instead, so leftover nf_tables chains on a legacy node would mislead
// this check.

import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

import type { Logger } from 'pino';

import { type Frontend, frontendToString } from '../datapath/frontends.js';
import { IptablesFrontends } from './kube-proxy-iptables-rules.js';
import type { BackendCheck } from './ports.js';
import { ProgrammedWaiters } from './programmed-waiter.js';

const execFileAsync = promisify(execFile);

// KUBE-SERVICES has a rule per Service port, so a large cluster prints
// megabytes.
const MAX_OUTPUT_BYTES = 256 << 20;
const COMMAND_TIMEOUT_MS = 30_000;

type Family = 'ipv4' | 'ipv6';
type IptablesBackend = 'nft' | 'legacy';

const COMMANDS: Record<Family, string> = { ipv4: 'iptables', ipv6: 'ip6tables' };

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
  private readonly waiters: ProgrammedWaiters;
  // The backend with kube-proxy's chains, per family, once found.
  private readonly backends = new Map<Family, IptablesBackend>();
  private polling = false;
  private stopped = false;
  private readonly abort = new AbortController();
  // The message of the last failed read that was logged, so that a poll
  // every 50 ms logs a lasting failure once.
  private loggedError: string | undefined;

  constructor(private readonly options: KubeProxyIptablesOptions) {
    this.log = options.log;
    this.waiters = new ProgrammedWaiters(options.log);
    this.pollIntervalMs = options.pollIntervalMs ?? 50;
  }

  // Reads the IPv4 chains once, so that a missing iptables stops the
  // agent at start rather than delaying every release to its timeout.
  async start(): Promise<void> {
    const rules = await this.read('ipv4');
    this.log.info({ backend: this.backends.get('ipv4') ?? 'not found yet', ...rules.sizes() }, "reading kube-proxy's iptables rules before each release");
  }

  waitProgrammed(frontends: Frontend[], timeoutMs: number, onProgrammed?: (frontends: Frontend[]) => void): Promise<boolean> {
    if (frontends.length === 0) return Promise.resolve(true);
    if (this.stopped) return Promise.resolve(false);

    const programmed = this.waiters.add(frontends, timeoutMs, onProgrammed, (unreported) => ({ missing: unreported.map(frontendToString) }));
    this.startPolling();
    return programmed;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    // Ends a listing in flight, which could run for seconds on a large
    // node.
    this.abort.abort();
    this.waiters.cancel();
  }

  private startPolling(): void {
    if (this.polling) return;
    this.polling = true;
    void this.poll();
  }

  // Reads the rules of the families that the waiters need, settles the
  // waiters whose frontends are all programmed, and repeats while any wait.
  // polling is cleared in the same step as the last check of waiters, so a
  // waiter added after it starts a new loop.
  private async poll(): Promise<void> {
    try {
      while (this.waiters.size > 0 && !this.stopped) {
        const families = new Set<Family>();
        for (const frontend of this.waiters.frontends()) families.add(familyOf(frontend));

        // A family that fails to read leaves its frontends waiting, and
        // the other family's are still settled.
        const rules = new Map<Family, IptablesFrontends>();
        for (const family of families) {
          try {
            rules.set(family, await this.read(family));
          } catch (err) {
            this.logReadError(err as Error);
          }
        }
        // A failure that comes back after a good poll is logged again.
        if (rules.size === families.size) this.loggedError = undefined;

        this.waiters.settle((frontend) => rules.get(familyOf(frontend))?.isProgrammed(frontend) ?? false);
        if (this.waiters.size > 0) await new Promise((resolve) => setTimeout(resolve, this.pollIntervalMs));
      }
    } finally {
      this.polling = false;
    }
  }

  private logReadError(err: Error): void {
    if (err.message === this.loggedError) return;
    this.log.warn({ err }, "reading kube-proxy's iptables rules failed, trying again");
    this.loggedError = err.message;
  }

  // Reads kube-proxy's Service chains of one family from its backend, or
  // from nf_tables while no backend has its chains yet.
  private async read(family: Family): Promise<IptablesFrontends> {
    let backend = this.backends.get(family);
    let nat: string | null = null;
    if (backend === undefined) {
      nat = await this.listChain(family, 'nft', 'nat', 'KUBE-SERVICES');
      if (nat !== null) backend = 'nft';
      else {
        // Reading the legacy backend needs CAP_NET_RAW, which the
        // DaemonSet grants. Without it the check goes on with nf_tables.
        try {
          nat = await this.listChain(family, 'legacy', 'nat', 'KUBE-SERVICES');
        } catch (err) {
          const hint = /Permission denied/.test((err as Error).message) ? '; the legacy backend needs CAP_NET_RAW' : '';
          this.logReadError(new Error(`${(err as Error).message}${hint}`));
        }
        if (nat !== null) backend = 'legacy';
      }
      if (backend === undefined) return IptablesFrontends.parse('', '');
      this.backends.set(family, backend);
      this.log.info({ family, backend }, "found kube-proxy's iptables rules");
    }

    const chains = await Promise.all([
      nat ?? this.listChain(family, backend, 'nat', 'KUBE-SERVICES'),
      this.listChain(family, backend, 'nat', 'KUBE-NODEPORTS'),
      this.listChain(family, backend, 'filter', 'KUBE-SERVICES'),
      this.listChain(family, backend, 'filter', 'KUBE-EXTERNAL-SERVICES'),
    ]);
    return IptablesFrontends.parse(`${chains[0] ?? ''}\n${chains[1] ?? ''}`, `${chains[2] ?? ''}\n${chains[3] ?? ''}`);
  }

  // Lists one chain with `iptables -S`, in the namespace of the tables, or
  // returns null when the chain does not exist. A chain instead of a whole
  // table, because iptables-nft-save takes about 2 s for the 40,000 rules
  // of 10,000 Services, and listing KUBE-SERVICES about 0.1 s.
  private async listChain(family: Family, backend: IptablesBackend, table: 'nat' | 'filter', chain: string): Promise<string | null> {
    const command = `${COMMANDS[family]}-${backend}`;
    // -w waits for the xtables lock that the legacy backend takes while
    // kube-proxy restores, instead of failing.
    const args = ['-w', '5', '-t', table, '-S', chain];
    const [program, programArgs] = this.options.netns === undefined ? [command, args] : ['nsenter', [`--net=${this.options.netns}`, command, ...args]];
    try {
      const { stdout } = await execFileAsync(program, programArgs, { timeout: COMMAND_TIMEOUT_MS, maxBuffer: MAX_OUTPUT_BYTES, signal: this.abort.signal });
      return stdout;
    } catch (err) {
      const e = err as Error & { stderr?: string };
      // iptables 1.8.9 exits with 1 for a missing chain: the legacy
      // backend prints "No chain/target/match by that name", and nf_tables
      // calls a chain of a table that does not exist "incompatible".
      if (/No chain\/target\/match by that name|is incompatible|does not exist/.test(e.stderr ?? '')) return null;
      throw new Error(`${command} -t ${table} -S ${chain} failed: ${e.stderr?.trim() || e.message}`);
    }
  }
}

function familyOf(frontend: Frontend): Family {
  return frontend.address.includes(':') ? 'ipv6' : 'ipv4';
}
