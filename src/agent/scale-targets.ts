// The replica counts of targets that no informer of the agent covers:
// every kind other than Deployment and StatefulSet, such as an Argo
// Rollout, read through its /scale subresource. The HorizontalPodAutoscaler
// reads the same subresource on each sync, every 15 s by default, and so
// does this poller. A target counts as unknown until a first read
// succeeds, and the controller does not scale it before then.

import { ApiException } from '@kubernetes/client-node';
import type { Logger } from 'pino';

import type { ScalePort, TargetRef, TargetScale } from './ports.js';

export type ScaleReading = { scale: TargetScale } | { problem: string };

export interface ScaleTargetsOptions {
  scaler: Pick<ScalePort, 'readScale'>;
  log: Logger;
  // Called when a reading changed, so the controller reconciles.
  onChange: () => void;
  // Time between two reads of one target. Defaults to 15 000 ms.
  intervalMs?: number;
}

interface Entry {
  namespace: string;
  target: TargetRef;
  reading: ScaleReading | undefined;
  // The read in flight, if any.
  inFlight: Promise<void> | undefined;
  // Set when a read is requested while one is in flight, which may have
  // started before the caller's scale write, so one more read follows.
  again: boolean;
  // The retry after a failed first read.
  retry: NodeJS.Timeout | undefined;
  // The message of the last API error logged, so that a retry every second
  // logs it once.
  loggedError: string | undefined;
}

// A first read that fails with an API error is tried again after this
// long, because the workload stays unknown, and unscaled, until one
// succeeds.
const FIRST_READ_RETRY_MS = 1000;

export class ScaleTargets {
  private readonly entries = new Map<string, Entry>();
  private readonly intervalMs: number;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly options: ScaleTargetsOptions) {
    this.intervalMs = options.intervalMs ?? 15_000;
  }

  start(): void {
    this.timer = setInterval(() => {
      for (const entry of this.entries.values()) void this.read(entry);
    }, this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    for (const entry of this.entries.values()) clearTimeout(entry.retry);
  }

  // Starts reading the targets not read yet, and resolves once each has
  // a reading or timeoutMs has passed, whichever comes first.
  async readAll(targets: { namespace: string; target: TargetRef }[], timeoutMs: number): Promise<void> {
    const reads = targets.map(({ namespace, target }) => {
      this.get(namespace, target);
      return this.entries.get(scaleTargetKey(namespace, target))!.inFlight;
    });
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeoutMs);
    });
    await Promise.race([Promise.all(reads), timeout]);
    clearTimeout(timer);
  }

  // The last reading of the target, or undefined before the first. The
  // first call for a target starts reading it.
  get(namespace: string, target: TargetRef): ScaleReading | undefined {
    const key = scaleTargetKey(namespace, target);
    let entry = this.entries.get(key);
    if (entry === undefined) {
      entry = { namespace, target, reading: undefined, inFlight: undefined, again: false, retry: undefined, loggedError: undefined };
      this.entries.set(key, entry);
      void this.read(entry);
    }
    return entry.reading;
  }

  // Reads the target again now, after a scale write changed it.
  refresh(namespace: string, target: TargetRef): void {
    const entry = this.entries.get(scaleTargetKey(namespace, target));
    if (entry !== undefined) void this.read(entry);
  }

  // Stops reading the targets whose scaleTargetKey() is not in keys.
  retain(keys: Set<string>): void {
    for (const [key, entry] of this.entries) {
      if (keys.has(key)) continue;
      clearTimeout(entry.retry);
      this.entries.delete(key);
    }
  }

  // Reads the target, one read at a time. A read requested during one
  // runs after it, because the one in flight may predate a scale write.
  private read(entry: Entry): Promise<void> {
    if (entry.inFlight !== undefined) {
      entry.again = true;
      return entry.inFlight;
    }
    entry.inFlight = (async () => {
      do {
        entry.again = false;
        await this.readOnce(entry);
      } while (entry.again && this.entries.get(scaleTargetKey(entry.namespace, entry.target)) === entry);
      entry.inFlight = undefined;
    })();
    return entry.inFlight;
  }

  private async readOnce(entry: Entry): Promise<void> {
    const { namespace, target } = entry;
    let reading: ScaleReading;
    try {
      const scale = await this.options.scaler.readScale(namespace, target);
      reading = scale === null ? { problem: `spec.targetRef: ${target.kind} ${namespace}/${target.name} (${target.apiVersion}) not found` } : { scale };
    } catch (err) {
      // An API error keeps the last reading, or none, because a passing
      // error must neither close an open gate nor make a valid workload
      // invalid. Any other error comes from the agent's own checks of the
      // target, such as a kind that the API server does not serve.
      // A 403 Forbidden before any good read is a missing RBAC rule, which
      // the ClusterRole grants for Deployments and StatefulSets only. After
      // a good read it counts as passing, as from a failing authorization
      // webhook, so the workload keeps its last reading.
      if (err instanceof ApiException && err.code === 403 && (entry.reading === undefined || 'problem' in entry.reading)) {
        reading = {
          problem:
            `spec.targetRef: the agent may not read the scale of ${target.kind} ${namespace}/${target.name} (${target.apiVersion}): 403 Forbidden; ` +
            'add get and update on its scale subresource to the zerohold-agent ClusterRole, as docs/deploy.md describes',
        };
      } else if (err instanceof ApiException) {
        if (err.message !== entry.loggedError) {
          this.options.log.warn({ err, target: `${target.kind} ${namespace}/${target.name}` }, 'reading the scale of a target failed, trying again');
          entry.loggedError = err.message;
        }
        if (entry.reading === undefined) {
          clearTimeout(entry.retry);
          entry.retry = setTimeout(() => void this.read(entry), FIRST_READ_RETRY_MS);
          entry.retry.unref();
        }
        return;
      } else {
        reading = { problem: `spec.targetRef: ${(err as Error).message}` };
      }
    }
    entry.loggedError = undefined;

    if (this.entries.get(scaleTargetKey(namespace, target)) !== entry) return;
    const changed = JSON.stringify(reading) !== JSON.stringify(entry.reading);
    entry.reading = reading;
    if (changed) this.options.onChange();
  }
}

export function scaleTargetKey(namespace: string, target: TargetRef): string {
  return `${target.apiVersion}|${target.kind}|${namespace}/${target.name}`;
}
