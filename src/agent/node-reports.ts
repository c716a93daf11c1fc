// How the agents of a cluster share what each node sees. Every agent keeps
// one Lease per node, zerohold-node-<node>, renewed each report interval:
// its renewTime shows the node is alive, and three annotations carry the
// node's last activity per workload (Unix milliseconds), the scale-downs
// for which the node has closed its gate, and the flows it holds now per
// workload. The leader reads all of them to decide that a workload is idle
// cluster-wide and that every live node holds new flows before it scales
// the workload to zero, and it sums the held flows for status.heldFlows.

import {
  ADD,
  ApiException,
  CoordinationV1Api,
  DELETE,
  type Informer,
  KubeConfig,
  makeInformer,
  UPDATE,
  V1MicroTime,
  type V1Lease,
} from '@kubernetes/client-node';
import type { Logger } from 'pino';

import { monotonicMs } from '../hubble/monotonic-time.js';
import { restartOnError } from './informers.js';
import type { WorkloadKey } from './ports.js';

export const REPORT_LABEL = 'zerohold.dev/node-report';
export const ACTIVITY_ANNOTATION = 'zerohold.dev/activity';
export const GATES_CLOSED_ANNOTATION = 'zerohold.dev/gates-closed';
export const HELD_FLOWS_ANNOTATION = 'zerohold.dev/held-flows';

interface NodeReport {
  node: string;
  // When this process saw the report change, on its CLOCK_MONOTONIC clock,
  // so that neither skew between nodes nor a jump of this node's wall
  // clock makes a live node look dead.
  seenMs: number;
  // The Lease's renewTime in Unix ms on the node's clock, or NaN.
  renewMs: number;
  activity: Record<WorkloadKey, number>;
  gatesClosed: Record<WorkloadKey, string>;
  heldFlows: Record<WorkloadKey, number>;
}

// The content of one node's report.
export interface NodeReportContent {
  activity: Map<WorkloadKey, number>;
  gatesClosed: Map<WorkloadKey, string>;
  heldFlows: Map<WorkloadKey, number>;
}

export interface NodeReportsOptions {
  namespace: string;
  nodeName: string;
  // The uid of the Node object. With it, the Lease names the Node as its
  // owner, so that the garbage collector deletes the Lease with the Node,
  // as kubelet's Leases in kube-node-lease are.
  nodeUid?: string;
  // A node whose report has not changed for this long counts as gone.
  staleAfterMs: number;
  // Unix time and CLOCK_MONOTONIC in milliseconds, replaced by tests.
  now?: () => number;
  monotonicNow?: () => number;
}

// A node whose report has not changed for this many stale periods is
// forgotten, such as a node that a cluster autoscaler removed.
const FORGET_AFTER_STALE_PERIODS = 100;

function parseJson<T>(text: string | undefined, fallback: T): T {
  if (!text) return fallback;
  try {
    return JSON.parse(text) as T;
  } catch {
    return fallback;
  }
}

export class NodeReports {
  private readonly api: CoordinationV1Api;
  private readonly informer: Informer<V1Lease>;
  private readonly reports = new Map<string, NodeReport>();
  private readonly now: () => number;
  private readonly monotonicNow: () => number;
  private stopped = false;

  constructor(
    kc: KubeConfig,
    private readonly options: NodeReportsOptions,
    log: Logger,
  ) {
    this.api = kc.makeApiClient(CoordinationV1Api);
    this.now = options.now ?? Date.now;
    this.monotonicNow = options.monotonicNow ?? monotonicMs;
    const selector = `${REPORT_LABEL}=true`;
    this.informer = makeInformer(
      kc,
      `/apis/coordination.k8s.io/v1/namespaces/${options.namespace}/leases`,
      () => this.api.listNamespacedLease({ namespace: options.namespace, labelSelector: selector }),
      selector,
    );
    this.informer.on(ADD, (lease) => this.remember(lease));
    this.informer.on(UPDATE, (lease) => this.remember(lease));
    this.informer.on(DELETE, (lease) => this.reports.delete(lease.spec?.holderIdentity ?? ''));
    restartOnError(this.informer, log, 'node report', () => this.stopped);
  }

  start(): Promise<void> {
    this.stopped = false;
    return this.informer.start();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.informer.stop();
  }

  // Writes this node's report. Only this agent writes its own Lease, so a
  // conflict means a stale read: read again and retry once.
  async publish(content: NodeReportContent): Promise<void> {
    const { namespace, nodeName, staleAfterMs } = this.options;
    const name = `zerohold-node-${nodeName}`;
    const body: V1Lease = {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: {
        name,
        namespace,
        labels: { [REPORT_LABEL]: 'true' },
        ...(this.options.nodeUid ? { ownerReferences: [{ apiVersion: 'v1', kind: 'Node', name: nodeName, uid: this.options.nodeUid }] } : {}),
        annotations: {
          [ACTIVITY_ANNOTATION]: JSON.stringify(Object.fromEntries(content.activity)),
          [GATES_CLOSED_ANNOTATION]: JSON.stringify(Object.fromEntries(content.gatesClosed)),
          [HELD_FLOWS_ANNOTATION]: JSON.stringify(Object.fromEntries(content.heldFlows)),
        },
      },
      spec: { holderIdentity: nodeName, leaseDurationSeconds: Math.ceil(staleAfterMs / 1000), renewTime: new V1MicroTime(this.now()) },
    };

    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const current = await this.api.readNamespacedLease({ name, namespace });
        body.metadata!.resourceVersion = current.metadata?.resourceVersion;
        await this.api.replaceNamespacedLease({ name, namespace, body });
        return;
      } catch (err) {
        if (err instanceof ApiException && err.code === 404) {
          await this.api.createNamespacedLease({ namespace, body });
          return;
        }
        if (!(err instanceof ApiException && err.code === 409) || attempt === 1) throw err;
      }
    }
  }

  liveNodes(): string[] {
    const now = this.monotonicNow();
    const live: string[] = [];
    for (const report of this.reports.values()) {
      const age = now - report.seenMs;
      if (age <= this.options.staleAfterMs) live.push(report.node);
      else if (age > FORGET_AFTER_STALE_PERIODS * this.options.staleAfterMs) this.reports.delete(report.node);
    }
    return live;
  }

  // The latest activity of a workload on any live node, on this process's
  // CLOCK_MONOTONIC clock. A report's activity and its renewTime come from
  // the same node clock, so their difference, the activity's age when the
  // node published, holds whatever the skew between the nodes.
  lastActivity(workload: WorkloadKey): number | undefined {
    let latest: number | undefined;
    for (const node of this.liveNodes()) {
      const report = this.reports.get(node)!;
      const at = report.activity[workload];
      if (at === undefined) continue;

      const local = Number.isNaN(report.renewMs) ? this.monotonicNow() - (this.now() - at) : report.seenMs - Math.max(0, report.renewMs - at);
      if (latest === undefined || local > latest) latest = local;
    }
    return latest;
  }

  // Flows of a workload held on live nodes other than this one, which
  // counts its own from its datapath.
  heldFlowsElsewhere(workload: WorkloadKey): number {
    let total = 0;
    for (const node of this.liveNodes()) {
      if (node !== this.options.nodeName) total += this.reports.get(node)!.heldFlows[workload] ?? 0;
    }
    return total;
  }

  // Live nodes that have not yet closed their gate for this scale-down.
  nodesWithOpenGate(workload: WorkloadKey, scaleDownId: string): string[] {
    return this.liveNodes().filter((node) => this.reports.get(node)!.gatesClosed[workload] !== scaleDownId);
  }

  private remember(lease: V1Lease): void {
    const node = lease.spec?.holderIdentity;
    if (!node) return;

    // A listed Lease carries a Date, a watched one the RFC 3339 string.
    const renew: unknown = lease.spec?.renewTime;
    let renewMs = NaN;
    if (renew instanceof Date) renewMs = renew.getTime();
    else if (typeof renew === 'string') renewMs = Date.parse(renew);
    const previous = this.reports.get(node);
    const annotations = lease.metadata?.annotations ?? {};
    this.reports.set(node, {
      node,
      seenMs: previous && Object.is(previous.renewMs, renewMs) ? previous.seenMs : this.monotonicNow(),
      renewMs,
      activity: parseJson(annotations[ACTIVITY_ANNOTATION], {}),
      gatesClosed: parseJson(annotations[GATES_CLOSED_ANNOTATION], {}),
      heldFlows: parseJson(annotations[HELD_FLOWS_ANNOTATION], {}),
    });
  }
}
