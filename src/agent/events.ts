// Kubernetes Events on ScaleToZero objects and their targets: woken,
// scaled to zero, wake timed out, invalid configuration. Repeats of one
// event (same object, type, reason and message) within the aggregation
// window update the count of the existing Event instead of creating new
// ones, as client-go's event correlator does, so a flapping workload
// cannot flood etcd.

import { CoreV1Api, type CoreV1Event, KubeConfig, PatchStrategy, setHeaderOptions, type V1ObjectReference } from '@kubernetes/client-node';
import type { Logger } from 'pino';

const AGGREGATION_WINDOW_MS = 10 * 60_000;
const COMPONENT = 'zerohold-agent';
// client-node sends a PATCH as a JSON patch unless the Content-Type is set.
const MERGE_PATCH = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

export type EventType = 'Normal' | 'Warning';

interface Recorded {
  name: string;
  count: number;
  lastMs: number;
}

export class EventRecorder {
  private readonly api: CoreV1Api;
  private readonly recent = new Map<string, Recorded>();
  private sequence = 0;

  constructor(
    kc: KubeConfig,
    private readonly host: string,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    this.api = kc.makeApiClient(CoreV1Api);
  }

  // Records an Event. Failures are logged and swallowed: an Event is a
  // report, and losing one must not stop a wake or a scale-down.
  async record(object: V1ObjectReference, type: EventType, reason: string, message: string): Promise<void> {
    const namespace = object.namespace ?? 'default';
    const key = `${object.kind}|${namespace}|${object.name}|${type}|${reason}|${message}`;
    const now = this.now();
    this.expire(now);

    try {
      const previous = this.recent.get(key);
      if (previous) {
        previous.count++;
        previous.lastMs = now;
        await this.api.patchNamespacedEvent(
          { name: previous.name, namespace, body: { count: previous.count, lastTimestamp: new Date(now) } },
          MERGE_PATCH,
        );
        return;
      }

      const event: CoreV1Event = {
        metadata: { name: `${object.name}.${now.toString(16)}${(this.sequence++).toString(16)}`, namespace },
        involvedObject: object,
        type,
        reason,
        message,
        count: 1,
        firstTimestamp: new Date(now),
        lastTimestamp: new Date(now),
        source: { component: COMPONENT, host: this.host },
        reportingComponent: COMPONENT,
        reportingInstance: this.host,
      };
      await this.api.createNamespacedEvent({ namespace, body: event });
      this.recent.set(key, { name: event.metadata.name!, count: 1, lastMs: now });
    } catch (err) {
      this.log.warn({ err, reason, object: `${object.kind} ${namespace}/${object.name}` }, 'recording an event failed');
    }
  }

  private expire(now: number): void {
    for (const [key, recorded] of this.recent) {
      if (now - recorded.lastMs > AGGREGATION_WINDOW_MS) this.recent.delete(key);
    }
  }
}
