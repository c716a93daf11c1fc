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
// has no change feed that both of its backends offer.
//
// kube-proxy writes to the nf_tables or the legacy backend, whichever the
// iptables wrapper in its image picks (kubernetes-sigs/iptables-wrappers,
// pkg/xtables/detect.go): the backend where kubelet created
// KUBE-IPTABLES-HINT or KUBE-KUBELET-CANARY in the mangle table, checked
// on nf_tables first. The check picks the backend the same way. Where no
// backend has either chain, the wrapper defaults to nf_tables, and the
// check reads the first backend that has kube-proxy's KUBE-SERVICES chain,
// nf_tables first.

import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
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
// The kernel's list of the legacy tables that exist in a namespace.
const LEGACY_TABLE_NAMES: Record<Family, string> = { ipv4: '/proc/net/ip_tables_names', ipv6: '/proc/net/ip6_tables_names' };
// The chains that kubelet creates in the mangle table of the backend it
// uses: KUBE-IPTABLES-HINT since Kubernetes 1.24, KUBE-KUBELET-CANARY
// from 1.17.
const KUBELET_CHAINS = /^-N (KUBE-IPTABLES-HINT|KUBE-KUBELET-CANARY)$/m;

export interface KubeProxyIptablesOptions {
  // Network namespace file of kube-proxy's tables, such as /run/netns/node1.
  // Unset: the agent's own namespace, as with hostNetwork in a cluster.
  netns?: string;
  log: Logger;
  // Time between two reads while a release waits. Defaults to 50 ms.
  pollIntervalMs?: number;
  // Time between two searches for kubelet's chains while none was found.
  // Defaults to 10 s.
  kubeletSearchIntervalMs?: number;
}

export class KubeProxyIptables implements BackendCheck {
  private readonly log: Logger;
  private readonly pollIntervalMs: number;
  private readonly kubeletSearchIntervalMs: number;
  private readonly waiters: ProgrammedWaiters;
  // The backend with kube-proxy's chains, per family, once found, for a
  // node where kubelet marked none.
  private readonly backends = new Map<Family, IptablesBackend>();
  // The backend that kubelet marked, once found. It applies to both
  // families and takes precedence over backends.
  private kubeletBackend: IptablesBackend | undefined;
  // Date.now() of the last search for kubelet's chains while none was
  // found, because kubelet may create them after the agent started.
  private kubeletSearchedAtMs = -Infinity;
  // Messages of failed searches that were logged, each logged once.
  private readonly loggedSearchErrors = new Set<string>();
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
    this.kubeletSearchIntervalMs = options.kubeletSearchIntervalMs ?? 10_000;
  }

  // Reads the IPv4 chains once, so that a missing iptables stops the
  // agent at start rather than delaying every release to its timeout.
  async start(): Promise<void> {
    const rules = await this.read('ipv4');
    const backend = this.kubeletBackend ?? this.backends.get('ipv4') ?? 'not found yet';
    this.log.info({ backend, ...rules.sizes() }, "reading kube-proxy's iptables rules before each release");
  }

  // Returns the kube-proxy mode whose rules kube-proxy's KUBE-SERVICES
  // chain in the nat table holds, in either family on either backend, for
  // release.kubeProxy: auto. IPVS mode writes that chain too, with matches
  // on its KUBE-CLUSTER-IP ipset instead of jumps to per-Service chains.
  // Returns undefined while the chain is missing or has neither, as
  // before kube-proxy's first sync. A family whose listing fails, such as
  // ip6tables without IPv6, counts as without the chain, except for a
  // missing CAP_NET_RAW, which rejects.
  async kubeProxyRulesMode(): Promise<'iptables' | 'ipvs' | undefined> {
    let ipvs = false;
    for (const family of ['ipv4', 'ipv6'] as const) {
      let services: string | null = null;
      try {
        const backend = await this.findKubeProxyBackend(family);
        if (backend !== undefined) services = await this.listChain(family, backend, 'nat', 'KUBE-SERVICES');
      } catch (err) {
        if (/CAP_NET_RAW/.test((err as Error).message)) throw err;
        this.logSearchError(err as Error, "looking for kube-proxy's iptables rules failed, so this family counts as without them");
      }
      const mode = services === null ? undefined : servicesChainMode(services);
      if (mode === 'iptables') return mode;
      if (mode === 'ipvs') ipvs = true;
    }
    return ipvs ? 'ipvs' : undefined;
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
  // returns no frontends while the backend is not known yet.
  private async read(family: Family): Promise<IptablesFrontends> {
    await this.searchKubeletBackend();
    let backend = this.kubeletBackend ?? this.backends.get(family);
    if (backend === undefined) {
      backend = await this.findKubeProxyBackend(family);
      if (backend === undefined) return IptablesFrontends.parse('', '');
      this.backends.set(family, backend);
      this.log.info({ family, backend }, "found kube-proxy's iptables rules, and no kubelet chains name a backend");
    }

    // A legacy table that does not exist has no rules, and listing it
    // would create it.
    const legacyTables = backend === 'legacy' ? await this.legacyTables(family) : null;
    const list = (table: 'nat' | 'filter', chain: string) => (legacyTables === null || legacyTables.has(table) ? this.listChain(family, backend, table, chain) : null);
    const chains = await Promise.all([list('nat', 'KUBE-SERVICES'), list('nat', 'KUBE-NODEPORTS'), list('filter', 'KUBE-SERVICES'), list('filter', 'KUBE-EXTERNAL-SERVICES')]);
    return IptablesFrontends.parse(`${chains[0] ?? ''}\n${chains[1] ?? ''}`, `${chains[2] ?? ''}\n${chains[3] ?? ''}`);
  }

  // Looks for the backend that kubelet marked, unless it was found, or
  // searched for within the last kubeletSearchIntervalMs.
  private async searchKubeletBackend(): Promise<void> {
    if (this.kubeletBackend !== undefined || Date.now() - this.kubeletSearchedAtMs < this.kubeletSearchIntervalMs) return;
    this.kubeletSearchedAtMs = Date.now();

    this.kubeletBackend = await this.findKubeletBackend();
    if (this.kubeletBackend !== undefined) this.log.info({ backend: this.kubeletBackend }, "found kubelet's iptables chains, so kube-proxy writes to this backend");
  }

  // Returns the first backend, nf_tables before legacy, in whose mangle
  // table kubelet created one of its chains, in either family. As in the
  // wrapper, a listing that fails, such as ip6tables on a node without
  // IPv6, only rules out its backend and family.
  private async findKubeletBackend(): Promise<IptablesBackend | undefined> {
    for (const backend of ['nft', 'legacy'] as const) {
      for (const family of ['ipv4', 'ipv6'] as const) {
        try {
          if (backend === 'legacy' && !(await this.legacyTables(family)).has('mangle')) continue;
          const mangle = await this.runIptables(family, backend, ['-t', 'mangle', '-S']);
          if (mangle !== null && KUBELET_CHAINS.test(mangle)) return backend;
        } catch (err) {
          this.logSearchError(err as Error);
        }
      }
    }
    return undefined;
  }

  private logSearchError(err: Error, message = "looking for kubelet's iptables chains failed, so this backend and family are skipped"): void {
    if (this.loggedSearchErrors.has(err.message)) return;
    this.loggedSearchErrors.add(err.message);
    this.log.warn({ err }, message);
  }

  // Returns the first backend, nf_tables before legacy, that has
  // kube-proxy's KUBE-SERVICES chain in this family.
  private async findKubeProxyBackend(family: Family): Promise<IptablesBackend | undefined> {
    if ((await this.listChain(family, 'nft', 'nat', 'KUBE-SERVICES')) !== null) return 'nft';
    if ((await this.legacyTables(family)).has('nat') && (await this.listChain(family, 'legacy', 'nat', 'KUBE-SERVICES')) !== null) return 'legacy';
    return undefined;
  }

  // Returns the legacy tables that exist in the namespace. Any access
  // through iptables-legacy creates the table in the kernel, as the
  // wrapper's source notes, so the legacy backend is read only where the
  // kernel lists the table. iptables-nft 1.8.9 does not create tables to
  // list them.
  private async legacyTables(family: Family): Promise<Set<string>> {
    let names: string;
    try {
      names =
        this.options.netns === undefined
          ? await readFile(LEGACY_TABLE_NAMES[family], 'utf8')
          : (await execFileAsync('nsenter', [`--net=${this.options.netns}`, 'cat', LEGACY_TABLE_NAMES[family]], { timeout: COMMAND_TIMEOUT_MS, signal: this.abort.signal })).stdout;
    } catch (err) {
      // The file exists only while the kernel's ip_tables or ip6_tables
      // module is loaded, so without it there are no legacy tables.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' || /No such file/.test((err as { stderr?: string }).stderr ?? '')) return new Set();
      throw err;
    }
    return new Set(names.split('\n').filter((name) => name !== ''));
  }

  // Lists one chain with `iptables -S`, in the namespace of the tables, or
  // returns null when the chain does not exist. A chain instead of a whole
  // table, because iptables-nft-save takes about 2 s for the 40,000 rules
  // of 10,000 Services, and listing KUBE-SERVICES about 0.1 s.
  private listChain(family: Family, backend: IptablesBackend, table: 'nat' | 'filter', chain: string): Promise<string | null> {
    return this.runIptables(family, backend, ['-t', table, '-S', chain]);
  }

  // Runs iptables of one family and backend in the namespace of the
  // tables, and returns its output, or null when the chain or table does
  // not exist.
  private async runIptables(family: Family, backend: IptablesBackend, args: string[]): Promise<string | null> {
    const command = `${COMMANDS[family]}-${backend}`;
    // -w waits for the xtables lock that the legacy backend takes while
    // kube-proxy restores, instead of failing.
    const commandArgs = ['-w', '5', ...args];
    const [program, programArgs] = this.options.netns === undefined ? [command, commandArgs] : ['nsenter', [`--net=${this.options.netns}`, command, ...commandArgs]];
    try {
      const { stdout } = await execFileAsync(program, programArgs, { timeout: COMMAND_TIMEOUT_MS, maxBuffer: MAX_OUTPUT_BYTES, signal: this.abort.signal });
      return stdout;
    } catch (err) {
      const e = err as Error & { stderr?: string };
      // iptables 1.8.9 exits with 1 for a missing chain: the legacy
      // backend prints "No chain/target/match by that name", and nf_tables
      // calls a chain of a table that does not exist "incompatible".
      if (/No chain\/target\/match by that name|is incompatible|does not exist/.test(e.stderr ?? '')) return null;

      // Reading the legacy backend needs CAP_NET_RAW, which the DaemonSet
      // grants.
      const hint = backend === 'legacy' && /Permission denied/.test(e.stderr ?? '') ? '; the legacy backend needs CAP_NET_RAW' : '';
      throw new Error(`${command} ${args.join(' ')} failed: ${e.stderr?.trim() || e.message}${hint}`);
    }
  }
}

// Returns the kube-proxy mode that wrote a KUBE-SERVICES chain of the nat
// table, from its `iptables -S` listing: iptables mode jumps to
// per-Service chains (KUBE-SVC-*, KUBE-EXT-*) and to KUBE-NODEPORTS, and
// IPVS mode matches its KUBE-CLUSTER-IP ipset and jumps to KUBE-NODE-PORT.
// Returns undefined for a chain with neither, as before the first sync.
export function servicesChainMode(listing: string): 'iptables' | 'ipvs' | undefined {
  if (/ -j (KUBE-SVC-|KUBE-EXT-|KUBE-NODEPORTS\b)/.test(listing)) return 'iptables';
  if (/--match-set KUBE-CLUSTER-IP /.test(listing)) return 'ipvs';
  return undefined;
}

function familyOf(frontend: Frontend): Family {
  return frontend.address.includes(':') ? 'ipv6' : 'ipv4';
}
