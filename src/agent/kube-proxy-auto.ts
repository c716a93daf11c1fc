// The release check of release.kubeProxy: auto, the default. It finds the
// mode that kube-proxy runs in on this node from what kube-proxy wrote,
// and then runs that mode's check:
//
//   nftables  the service-ips map of its table `kube-proxy`, ip or ip6
//   iptables  its KUBE-SERVICES chain in the nat table, on the nf_tables
//             or the legacy backend, with jumps to per-Service chains
//   ipvs      the same chain with matches on its KUBE-CLUSTER-IP ipset
//             instead, or else its kube-ipvs0 device. IPVS mode has no
//             check, so releases wait for the Ready endpoint alone.
//
// nftables is looked for first, because kube-proxy in nftables mode may
// leave the chains of an earlier iptables mode behind. The device comes
// last, because kube-proxy switched from IPVS to iptables mode leaves it.
// Until a mode is found, as on a node that boots or whose Services go
// through something other than kube-proxy, releases wait for the Ready
// endpoint alone, and the search repeats, every 10 s at first and then
// less often, up to every 5 min. Once a mode is found, a search every
// 5 min notices a kube-proxy that changed its mode, and the check of the
// new mode takes over. A search that finds nothing keeps the mode found.

import type { Logger } from 'pino';

import type { Frontend } from '../datapath/frontends.js';
import { loadNative } from '../datapath/native.js';
import { KubeProxyNftables } from './kube-proxy-check.js';
import { KubeProxyIptables } from './kube-proxy-iptables-check.js';
import { KUBE_PROXY_TABLE, NFT_FAMILIES, SERVICE_IPS } from './kube-proxy-maps.js';
import { listNftSet } from './nft-command.js';
import type { BackendCheck } from './ports.js';

export type KubeProxyMode = 'nftables' | 'iptables' | 'ipvs';

// The dummy device to which kube-proxy in IPVS mode binds Service IPs.
const IPVS_DEVICE = 'kube-ipvs0';

const DEFAULT_SEARCH_INTERVAL_MS = 10_000;
const MAX_SEARCH_INTERVAL_MS = 5 * 60_000;
const SEARCHES_PER_INTERVAL = 6;
const RECHECK_INTERVAL_MS = 5 * 60_000;
// A search lists one map tersely, so a longer run means a stuck command.
const SEARCH_COMMAND_TIMEOUT_MS = 5000;

export interface KubeProxyCheckOptions {
  // Network namespace file of kube-proxy's tables, such as /run/netns/node1.
  // Unset: the agent's own namespace, as with hostNetwork in a cluster.
  netns?: string;
  // The node's addresses, for the nftables check's NodePort frontends.
  nodeAddresses: string[];
  log: Logger;
}

export type RunningCheck = BackendCheck & { stop(): Promise<void> };

// Starts the check of one mode. Rejects when its first read fails, such
// as without the nft or iptables command.
export async function startKubeProxyCheck(mode: 'nftables' | 'iptables', options: KubeProxyCheckOptions): Promise<RunningCheck> {
  const netns = options.netns === undefined ? {} : { netns: options.netns };
  const check = mode === 'nftables' ? new KubeProxyNftables({ ...netns, nodeAddresses: options.nodeAddresses, log: options.log }) : new KubeProxyIptables({ ...netns, log: options.log });
  await check.start();
  return check;
}

// Returns the mode whose tables, chains or device kube-proxy created in
// the namespace, or undefined when none exists yet. iptables reads the
// chains, and keeps the messages of failures it logged between calls.
// A step that fails, such as nft that cannot run or iptables without
// CAP_NET_RAW, does not stop the later steps. The search rejects with the
// first failure only when no step found a mode.
export async function detectKubeProxyMode(options: { netns?: string; iptables: KubeProxyIptables }): Promise<KubeProxyMode | undefined> {
  const steps: (() => Promise<KubeProxyMode | undefined>)[] = [
    async () => {
      for (const family of NFT_FAMILIES) {
        const map = await listNftSet(options.netns, family, KUBE_PROXY_TABLE, 'map', SERVICE_IPS, { terse: true, timeoutMs: SEARCH_COMMAND_TIMEOUT_MS });
        if (map !== null) return 'nftables';
      }
      return undefined;
    },
    () => options.iptables.kubeProxyRulesMode(),
    async () => {
      try {
        await loadNative().ifNameToIndex(IPVS_DEVICE, options.netns);
        return 'ipvs';
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENODEV') return undefined;
        throw err;
      }
    },
  ];

  let failure: Error | undefined;
  for (const step of steps) {
    try {
      const mode = await step();
      if (mode !== undefined) return mode;
    } catch (err) {
      failure ??= err as Error;
    }
  }
  if (failure !== undefined) throw failure;
  return undefined;
}

export interface KubeProxyAutoOptions extends KubeProxyCheckOptions {
  // Time between the first searches while no mode was found, doubling
  // after every SEARCHES_PER_INTERVAL searches up to MAX_SEARCH_INTERVAL_MS.
  // Defaults to 10 s.
  searchIntervalMs?: number;
  // Time between the searches once a mode was found. Defaults to 5 min.
  recheckIntervalMs?: number;
}

export class KubeProxyAuto implements BackendCheck {
  private readonly log: Logger;
  // Reads kube-proxy's chains for the searches, and runs no check itself.
  private readonly iptables: KubeProxyIptables;
  private inner: RunningCheck | undefined;
  private found: KubeProxyMode | undefined;
  private timer: NodeJS.Timeout | undefined;
  private searches = 0;
  private search: Promise<void> | undefined;
  private stopped = false;
  // The message of the last failed search that was logged.
  private loggedError: string | undefined;
  // When the last wait given to the current check times out, so that a
  // check replaced after a mode change ends only after its waits.
  private waitsEndMs = 0;
  // Checks of a previous mode whose waits still run.
  private readonly retiring = new Set<RunningCheck>();

  constructor(private readonly options: KubeProxyAutoOptions) {
    this.log = options.log;
    this.iptables = new KubeProxyIptables({ ...(options.netns === undefined ? {} : { netns: options.netns }), log: options.log });
  }

  // The mode found so far.
  get mode(): KubeProxyMode | undefined {
    return this.found;
  }

  // Searches once, and keeps searching in the background until a mode is
  // found. A failed search is logged and retried. Rejects only when the
  // found mode's check fails to start.
  async start(): Promise<void> {
    const searched = await this.searchOnce();
    if (this.found !== undefined || this.stopped) return;

    if (searched) this.log.info('found no kube-proxy tables, chains or IPVS device, so releases wait for Ready endpoints alone until they appear');
    this.scheduleSearch();
  }

  waitProgrammed(frontends: Frontend[], timeoutMs: number, onProgrammed?: (frontends: Frontend[]) => void): Promise<boolean> {
    if (this.inner === undefined) return Promise.resolve(true);
    this.waitsEndMs = Math.max(this.waitsEndMs, Date.now() + timeoutMs);
    return this.inner.waitProgrammed(frontends, timeoutMs, onProgrammed);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.iptables.stop();
    await this.search?.catch(() => undefined);
    await this.inner?.stop();
    await Promise.all([...this.retiring].map((check) => check.stop()));
  }

  private scheduleSearch(): void {
    const first = this.options.searchIntervalMs ?? DEFAULT_SEARCH_INTERVAL_MS;
    const delayMs = Math.min(first * 2 ** Math.floor((this.searches - 1) / SEARCHES_PER_INTERVAL), Math.max(first, MAX_SEARCH_INTERVAL_MS));
    this.timer = setTimeout(() => {
      this.searchOnce().then(
        () => {
          if (this.found === undefined && !this.stopped) this.scheduleSearch();
        },
        (err: Error) => {
          // The found mode's check failed to start: search again later.
          this.log.error({ err }, "starting the check of kube-proxy's mode failed, searching again");
          if (!this.stopped) this.scheduleSearch();
        },
      );
    }, delayMs);
    this.timer.unref();
  }

  private scheduleRecheck(): void {
    this.timer = setTimeout(() => {
      void this.recheck().finally(() => {
        if (!this.stopped) this.scheduleRecheck();
      });
    }, this.options.recheckIntervalMs ?? RECHECK_INTERVAL_MS);
    this.timer.unref();
  }

  // Searches again once a mode was found, and switches to the check of a
  // different mode found.
  private async recheck(): Promise<void> {
    const { mode } = await this.detect("looking again for kube-proxy's mode failed, keeping the mode found");
    if (mode === undefined || mode === this.found || this.stopped) return;

    try {
      await this.useMode(mode);
    } catch (err) {
      this.log.error({ err, mode, previous: this.found }, "starting the check of kube-proxy's new mode failed, keeping the previous one");
    }
  }

  // Runs detectKubeProxyMode(), and logs a failure once per message.
  private async detect(failureMessage: string): Promise<{ mode: KubeProxyMode | undefined; failed: boolean }> {
    let mode: KubeProxyMode | undefined;
    let failed = false;
    this.search = detectKubeProxyMode({ ...(this.options.netns === undefined ? {} : { netns: this.options.netns }), iptables: this.iptables }).then(
      (found) => {
        mode = found;
      },
      (err: Error) => {
        failed = true;
        if (err.message === this.loggedError || this.stopped) return;
        this.loggedError = err.message;
        this.log.warn({ err, mode: this.found }, failureMessage);
      },
    );
    await this.search;
    return { mode, failed };
  }

  // Starts the check of mode and makes it the current one. Waits already
  // given to a previous mode's check run to their own timeouts before it
  // stops. Rejects when the new check fails to start, and keeps the
  // current one then.
  private async useMode(mode: KubeProxyMode): Promise<void> {
    const check = mode === 'ipvs' ? undefined : await startKubeProxyCheck(mode, this.options);
    if (this.stopped) {
      await check?.stop();
      return;
    }

    const previous = this.found;
    const old = this.inner;
    const oldWaitsEndMs = this.waitsEndMs;
    this.inner = check;
    this.found = mode;
    this.waitsEndMs = 0;
    if (previous !== undefined) this.log.info({ mode, previous }, "kube-proxy's mode changed, releases now wait for the rules of the new mode");
    else if (mode !== 'ipvs') this.log.info({ mode }, "found kube-proxy's mode, releases now wait for its rules");
    if (mode === 'ipvs') this.log.warn({ device: IPVS_DEVICE }, 'kube-proxy runs in IPVS mode, which has no release check, so releases wait for Ready endpoints alone and a SYN re-injected before its sync meets an ICMP port unreachable');
    if (previous === undefined) this.scheduleRecheck();

    if (old === undefined) return;
    this.retiring.add(old);
    const retire = setTimeout(
      () => {
        this.retiring.delete(old);
        old.stop().catch((err: Error) => this.log.warn({ err }, "stopping the check of kube-proxy's previous mode failed"));
      },
      Math.max(0, oldWaitsEndMs - Date.now()),
    );
    retire.unref();
  }

  // Runs one search and starts the check of the mode it finds. A search
  // that fails is logged, once per message. Returns false when it failed.
  private async searchOnce(): Promise<boolean> {
    this.searches++;
    const { mode, failed } = await this.detect('looking for the mode that kube-proxy runs in failed, trying again later');
    if (mode === undefined || this.stopped) return !failed;

    await this.useMode(mode);
    return true;
  }
}
