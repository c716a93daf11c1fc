// The release check of release.kubeProxy: auto, the default. It finds the
// mode that kube-proxy runs in on this node from what kube-proxy wrote,
// and then runs that mode's check:
//
//   nftables  the service-ips map of its table `kube-proxy`, ip or ip6
//   ipvs      its kube-ipvs0 device. IPVS mode has no check, so releases
//             wait for the Ready endpoint alone, as with 'none'.
//   iptables  its KUBE-SERVICES chain in the nat table, on the nf_tables
//             or the legacy backend
//
// They are looked for in this order. kube-proxy in nftables mode may leave
// the chains of an earlier iptables mode behind, and IPVS mode writes a
// KUBE-SERVICES chain of its own (for its ipset matches), without the
// per-Service chains that the iptables check reads. Until a mode is
// found, as on a node that boots or whose Services go through something
// other than kube-proxy, releases wait for the Ready endpoint alone, and
// the search repeats every searchIntervalMs.

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
// the namespace, or undefined when none exists yet.
export async function detectKubeProxyMode(options: { netns?: string; log: Logger }): Promise<KubeProxyMode | undefined> {
  for (const family of NFT_FAMILIES) {
    if ((await listNftSet(options.netns, family, KUBE_PROXY_TABLE, 'map', SERVICE_IPS)) !== null) return 'nftables';
  }

  try {
    await loadNative().ifNameToIndex(IPVS_DEVICE, options.netns);
    return 'ipvs';
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENODEV') throw err;
  }

  const iptables = new KubeProxyIptables({ ...(options.netns === undefined ? {} : { netns: options.netns }), log: options.log });
  try {
    if (await iptables.hasKubeProxyRules()) return 'iptables';
  } finally {
    await iptables.stop();
  }
  return undefined;
}

export interface KubeProxyAutoOptions extends KubeProxyCheckOptions {
  // Time between two searches while no mode was found. Defaults to 10 s.
  searchIntervalMs?: number;
}

export class KubeProxyAuto implements BackendCheck {
  private readonly log: Logger;
  private inner: RunningCheck | undefined;
  private found: KubeProxyMode | undefined;
  private timer: NodeJS.Timeout | undefined;
  private searching = false;
  private stopped = false;
  // The message of the last failed search that was logged.
  private loggedError: string | undefined;

  constructor(private readonly options: KubeProxyAutoOptions) {
    this.log = options.log;
  }

  // The mode found so far.
  get mode(): KubeProxyMode | undefined {
    return this.found;
  }

  // Searches once, and keeps searching in the background until a mode is
  // found. Rejects only when the found mode's check fails to start.
  async start(): Promise<void> {
    await this.search();
    if (this.found !== undefined || this.stopped) return;

    this.log.info({ searchIntervalMs: this.options.searchIntervalMs ?? DEFAULT_SEARCH_INTERVAL_MS }, "found no kube-proxy tables, chains or IPVS device; releasing on Ready endpoints alone until they appear");
    this.timer = setInterval(() => void this.searchInBackground(), this.options.searchIntervalMs ?? DEFAULT_SEARCH_INTERVAL_MS);
    this.timer.unref();
  }

  waitProgrammed(frontends: Frontend[], timeoutMs: number, onProgrammed?: (frontends: Frontend[]) => void): Promise<boolean> {
    if (this.inner === undefined) return Promise.resolve(true);
    return this.inner.waitProgrammed(frontends, timeoutMs, onProgrammed);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.inner?.stop();
  }

  private async searchInBackground(): Promise<void> {
    try {
      await this.search();
    } catch (err) {
      const error = err as Error;
      if (error.message === this.loggedError) return;
      this.loggedError = error.message;
      this.log.warn({ err: error }, 'looking for the mode that kube-proxy runs in failed, trying again');
    }
  }

  // Runs one search, unless one runs already, and starts the check of the
  // mode it finds.
  private async search(): Promise<void> {
    if (this.searching || this.found !== undefined) return;
    this.searching = true;
    try {
      const mode = await detectKubeProxyMode(this.options);
      if (mode === undefined || this.stopped) return;

      if (mode === 'ipvs') {
        this.log.warn({ device: IPVS_DEVICE }, 'kube-proxy runs in IPVS mode, which has no release check; releasing on Ready endpoints alone, so a SYN re-injected before its sync meets an ICMP port unreachable');
      } else {
        const check = await startKubeProxyCheck(mode, this.options);
        if (this.stopped) {
          await check.stop();
          return;
        }
        this.inner = check;
        this.log.info({ mode }, "found kube-proxy's mode, releases now wait for its rules");
      }
      this.found = mode;
      clearInterval(this.timer);
    } finally {
      this.searching = false;
    }
  }
}
