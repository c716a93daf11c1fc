// Lease-based leader election, following client-go's leaderelection: one
// coordination.k8s.io/v1 Lease, written with the resourceVersion that was
// read, so two candidates never both win a round. Expiry is judged by when
// this process last saw the Lease change, not by the holder's renewTime, so
// clock skew between nodes cannot make a live leader look expired.

import { ApiException, CoordinationV1Api, KubeConfig, V1MicroTime, type V1Lease } from '@kubernetes/client-node';
import type { Logger } from 'pino';

export interface LeaderElectionOptions {
  namespace: string;
  leaseName: string;
  identity: string;
  leaseDurationMs: number;
  // A leader that cannot renew within this long steps down, before its
  // Lease can expire for the others.
  renewDeadlineMs: number;
  retryPeriodMs: number;
  onStartedLeading?: () => void;
  onStoppedLeading?: () => void;
  // Injectable for tests, as client-go and the JavaScript client do.
  now?: () => number;
}

function isStatus(err: unknown, code: number): boolean {
  return err instanceof ApiException && err.code === code;
}

export class LeaderElector {
  private readonly api: CoordinationV1Api;
  private readonly now: () => number;
  private leading = false;
  private lastRenewMs = 0;
  // What this process last saw of the Lease, and when it saw it change.
  private observed: { holder: string; renewTime: string; atMs: number } | null = null;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(
    kc: KubeConfig,
    private readonly options: LeaderElectionOptions,
    private readonly log: Logger,
  ) {
    if (options.renewDeadlineMs >= options.leaseDurationMs) {
      throw new RangeError(`renewDeadline (${options.renewDeadlineMs} ms) must be shorter than leaseDuration (${options.leaseDurationMs} ms)`);
    }
    this.api = kc.makeApiClient(CoordinationV1Api);
    this.now = options.now ?? Date.now;
  }

  get isLeader(): boolean {
    return this.leading;
  }

  start(): void {
    this.stopped = false;
    void this.loop();
  }

  // Stops campaigning. A leader gives the Lease up at once, so a successor
  // need not wait for it to expire.
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.leading) {
      await this.release().catch((err: Error) => this.log.warn({ err }, 'releasing the leader lease failed'));
      this.setLeading(false);
    }
  }

  // One round: acquire or renew. Returns whether this process leads now.
  async tryAcquireOrRenew(): Promise<boolean> {
    const { namespace, leaseName: name, identity } = this.options;
    const now = this.now();

    let lease: V1Lease;
    try {
      lease = await this.api.readNamespacedLease({ name, namespace });
    } catch (err) {
      if (!isStatus(err, 404)) throw err;
      try {
        await this.api.createNamespacedLease({ namespace, body: this.leaseBody(name, namespace, now, 0, now) });
        this.observe(identity, now);
        return true;
      } catch (createErr) {
        if (isStatus(createErr, 409)) return false;
        throw createErr;
      }
    }

    const spec = lease.spec ?? {};
    const holder = spec.holderIdentity ?? '';
    this.observe(holder, now, spec.renewTime ? String(spec.renewTime) : '');

    const expired = now - this.observed!.atMs > this.options.leaseDurationMs;
    if (holder && holder !== identity && !expired) return false;

    const transitions = (spec.leaseTransitions ?? 0) + (holder === identity ? 0 : 1);
    const acquiredAt = holder === identity && spec.acquireTime ? new Date(spec.acquireTime).getTime() : now;
    const body = this.leaseBody(name, namespace, acquiredAt, transitions, now);
    body.metadata!.resourceVersion = lease.metadata?.resourceVersion;
    try {
      await this.api.replaceNamespacedLease({ name, namespace, body });
    } catch (err) {
      // Another candidate wrote first: it won this round.
      if (isStatus(err, 409)) return false;
      throw err;
    }
    this.observe(identity, now);
    return true;
  }

  private async loop(): Promise<void> {
    if (this.stopped) return;
    try {
      const won = await this.tryAcquireOrRenew();
      if (won) this.lastRenewMs = this.now();
      this.setLeading(won || (this.leading && this.now() - this.lastRenewMs < this.options.renewDeadlineMs));
    } catch (err) {
      this.log.warn({ err, lease: this.options.leaseName }, 'leader election round failed');
      if (this.leading && this.now() - this.lastRenewMs >= this.options.renewDeadlineMs) this.setLeading(false);
    }
    if (!this.stopped) this.timer = setTimeout(() => void this.loop(), this.options.retryPeriodMs);
  }

  private setLeading(leading: boolean): void {
    if (leading === this.leading) return;
    this.leading = leading;
    this.log.info({ lease: this.options.leaseName, identity: this.options.identity }, leading ? 'follower -> leader' : 'leader -> follower');
    if (leading) this.options.onStartedLeading?.();
    else this.options.onStoppedLeading?.();
  }

  private observe(holder: string, now: number, renewTime = String(now)): void {
    if (!this.observed || this.observed.holder !== holder || this.observed.renewTime !== renewTime) {
      this.observed = { holder, renewTime, atMs: now };
    }
  }

  private async release(): Promise<void> {
    const { namespace, leaseName: name, identity } = this.options;
    const lease = await this.api.readNamespacedLease({ name, namespace });
    if (lease.spec?.holderIdentity !== identity) return;
    lease.spec.holderIdentity = undefined;
    lease.spec.leaseDurationSeconds = 1;
    await this.api.replaceNamespacedLease({ name, namespace, body: lease });
  }

  private leaseBody(name: string, namespace: string, acquiredMs: number, transitions: number, now: number): V1Lease {
    return {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name, namespace },
      spec: {
        holderIdentity: this.options.identity,
        leaseDurationSeconds: Math.ceil(this.options.leaseDurationMs / 1000),
        acquireTime: new V1MicroTime(acquiredMs),
        renewTime: new V1MicroTime(now),
        leaseTransitions: transitions,
      },
    };
  }
}
