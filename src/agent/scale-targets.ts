// The replica counts of targets that no informer of the agent covers:
// every kind other than Deployment and StatefulSet, such as an Argo
// Rollout, read through its /scale subresource. The HorizontalPodAutoscaler
// reads the same subresource on each sync, every 15 s by default, and so
// does this poller. A target counts as unknown until its first read
// returns, so the controller neither holds its traffic nor scales it
// before then.

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
  reading$: Promise<void> | undefined;
}

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
  }

  // The last reading of the target, or undefined before the first. The
  // first call for a target starts reading it.
  get(namespace: string, target: TargetRef): ScaleReading | undefined {
    const key = scaleTargetKey(namespace, target);
    let entry = this.entries.get(key);
    if (entry === undefined) {
      entry = { namespace, target, reading: undefined, reading$: undefined };
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
    for (const key of this.entries.keys()) {
      if (!keys.has(key)) this.entries.delete(key);
    }
  }

  // One read at a time per target; a read asked for during one is served
  // by it.
  private read(entry: Entry): Promise<void> {
    entry.reading$ ??= this.readOnce(entry).finally(() => {
      entry.reading$ = undefined;
    });
    return entry.reading$;
  }

  private async readOnce(entry: Entry): Promise<void> {
    const { namespace, target } = entry;
    let reading: ScaleReading;
    try {
      const scale = await this.options.scaler.readScale(namespace, target);
      reading = scale === null ? { problem: `spec.targetRef: ${target.kind} ${namespace}/${target.name} (${target.apiVersion}) not found` } : { scale };
    } catch (err) {
      // A failed read keeps the last reading: a passing API error must
      // neither close an open gate nor make a valid workload invalid.
      this.options.log.warn({ err, target: `${target.kind} ${namespace}/${target.name}` }, 'reading the scale of a target failed, trying again later');
      if (entry.reading !== undefined) return;
      reading = { problem: `spec.targetRef: cannot read the scale of ${target.kind} ${namespace}/${target.name}: ${(err as Error).message}` };
    }

    if (this.entries.get(scaleTargetKey(namespace, target)) !== entry) return;
    const changed = JSON.stringify(reading) !== JSON.stringify(entry.reading);
    entry.reading = reading;
    if (changed) this.options.onChange();
  }
}

export function scaleTargetKey(namespace: string, target: TargetRef): string {
  return `${target.apiVersion}|${target.kind}|${namespace}/${target.name}`;
}
