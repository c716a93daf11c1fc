// The agent's controller: informers on ScaleToZero objects, Services and
// targets feed the lifecycle in phase.ts, and the actions it returns drive
// the datapath, the scale subresource and Events. One controller runs per
// node; the leader alone scales down and writes status.

import {
  ADD,
  AppsV1Api,
  AutoscalingV2Api,
  CoreV1Api,
  CustomObjectsApi,
  DELETE,
  type Informer,
  KubeConfig,
  type KubernetesObject,
  makeInformer,
  PatchStrategy,
  setHeaderOptions,
  UPDATE,
  type V1Deployment,
  type V1Service,
  type V1StatefulSet,
  type V2HorizontalPodAutoscaler,
} from '@kubernetes/client-node';
import { randomUUID } from 'node:crypto';

import type { Logger } from 'pino';

import type { EndpointReadiness } from './endpoint-readiness.js';
import type { EventRecorder } from './events.js';
import { restartOnError } from './informers.js';
import type { AgentMetrics } from './metrics.js';
import type { NodeReports } from './node-reports.js';
import { initialPhase, nextPhase, type PhaseAction, type PhaseEvent, type PhaseState } from './phase.js';
import type { ActivitySource, DatapathPort, ScalePort, WorkloadKey } from './ports.js';
import { resolveFrontends } from './service-frontends.js';
import { InvalidWorkloadError, selectorMatches, workloadFromScaleToZero, type ScaleToZero, type WorkloadSpec } from './workloads.js';

const GROUP = 'zerohold.dev';
const VERSION = 'v1alpha1';
const PLURAL = 'scaletozeros';
const MERGE_PATCH = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

export interface ControllerOptions {
  kc: KubeConfig;
  nodeAddresses: string[];
  datapath: DatapathPort;
  readiness: EndpointReadiness;
  scaler: ScalePort;
  events: EventRecorder;
  activity: ActivitySource;
  isLeader: () => boolean;
  log: Logger;
  metrics?: AgentMetrics;
  // The cluster's node reports. Without them the agent acts as the only
  // node: its own activity decides, and its own closed gate suffices.
  reports?: NodeReports;
  tickMs?: number;
  // How often this node publishes its report.
  reportIntervalMs?: number;
  // How long the leader waits for every live node to close its gate
  // before it calls a scale-down off.
  scaleDownTimeoutMs?: number;
  // CLOCK_MONOTONIC milliseconds, the clock of held frame timestamps.
  now?: () => number;
}

interface Workload {
  spec: WorkloadSpec;
  object: ScaleToZero;
  services: string[];
  state: PhaseState;
  replicas: number;
  // The scale-down this node closed its gate for, from status.scaleDownId.
  appliedScaleDownId: string | null;
  // Leader only: the scale-down it announced and when.
  pendingScaleDown: { id: string; startedMs: number } | null;
  // Latest activity known from any source, or when this agent started
  // tracking the workload; a source that stops reporting keeps it.
  lastActivityMs: number;
}

interface ScaleToZeroStatus {
  phase?: string;
  scaleDownId?: string | null;
  conditions?: { type: string; status: string; message: string }[];
}

function statusOf(object: ScaleToZero): ScaleToZeroStatus {
  return (object as { status?: ScaleToZeroStatus }).status ?? {};
}

type AnyInformer = Informer<KubernetesObject>;

function monotonicMs(): number {
  return Number(process.hrtime.bigint() / 1_000_000n);
}

export class Controller {
  private readonly workloads = new Map<WorkloadKey, Workload>();
  private readonly objects = new Map<string, ScaleToZero>();
  private readonly services = new Map<string, V1Service>();
  private readonly targets = new Map<string, V1Deployment | V1StatefulSet>();
  private readonly autoscalers = new Map<string, V2HorizontalPodAutoscaler>();
  private readonly informers: AnyInformer[] = [];
  private readonly custom: CustomObjectsApi;
  private readonly now: () => number;
  private timer: NodeJS.Timeout | null = null;
  private lastReportMs = -Infinity;
  private reconcileScheduled = false;
  private stopped = false;

  constructor(private readonly options: ControllerOptions) {
    this.custom = options.kc.makeApiClient(CustomObjectsApi);
    this.now = options.now ?? monotonicMs;
  }

  async start(): Promise<void> {
    const { kc } = this.options;
    const core = kc.makeApiClient(CoreV1Api);
    const apps = kc.makeApiClient(AppsV1Api);

    this.watch(makeInformer(kc, `/apis/${GROUP}/${VERSION}/${PLURAL}`, async () => (await this.custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural: PLURAL })) as never), this.objects);
    this.watch(makeInformer(kc, '/api/v1/services', () => core.listServiceForAllNamespaces()), this.services);
    this.watch(makeInformer(kc, '/apis/apps/v1/deployments', () => apps.listDeploymentForAllNamespaces()), this.targets, 'Deployment');
    this.watch(makeInformer(kc, '/apis/apps/v1/statefulsets', () => apps.listStatefulSetForAllNamespaces()), this.targets, 'StatefulSet');
    const autoscaling = kc.makeApiClient(AutoscalingV2Api);
    this.watch(makeInformer(kc, '/apis/autoscaling/v2/horizontalpodautoscalers', () => autoscaling.listHorizontalPodAutoscalerForAllNamespaces()), this.autoscalers);

    this.options.datapath.onWake((signal) => {
      const { flow } = signal;
      const host = (address: string) => (address.includes(':') ? `[${address}]` : address);
      this.feed(signal.workload, {
        type: 'flow-opener',
        nowMs: this.now(),
        client: `${host(flow.source)}:${flow.sourcePort}`,
        frontend: `${flow.protocol}/${host(flow.destination)}:${flow.destinationPort}`,
      });
    });
    this.options.readiness.onChange((key) => this.observe(key));

    for (const informer of this.informers) await informer.start();
    // The caches are complete now: install every workload before start()
    // returns, so the node keeps flow openers from then on.
    this.reconcileAll();
    this.timer = setInterval(() => this.tick(), this.options.tickMs ?? 1000);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    for (const informer of this.informers) await informer.stop();
  }

  phaseOf(key: WorkloadKey): PhaseState | undefined {
    return this.workloads.get(key)?.state;
  }

  private watch(informer: AnyInformer, cache: Map<string, KubernetesObject>, kind?: string): void {
    const keyOf = (o: KubernetesObject) => `${kind ? `${kind}|` : ''}${o.metadata?.namespace ?? ''}/${o.metadata?.name ?? ''}`;
    const changed = (o: KubernetesObject, deleted: boolean) => {
      if (deleted) cache.delete(keyOf(o));
      else cache.set(keyOf(o), o);
      this.scheduleReconcile();
    };
    informer.on(ADD, (o) => changed(o, false));
    informer.on(UPDATE, (o) => changed(o, false));
    informer.on(DELETE, (o) => changed(o, true));
    restartOnError(informer, this.options.log, kind ?? 'informer', () => this.stopped);
    this.informers.push(informer);
  }

  // Coalesces a burst of informer events, such as an initial list of
  // thousands of objects, into one reconcile.
  private scheduleReconcile(): void {
    if (this.reconcileScheduled) return;
    this.reconcileScheduled = true;
    setImmediate(() => {
      this.reconcileScheduled = false;
      if (!this.stopped) this.reconcileAll();
    });
  }

  // Brings every workload in line with the caches.
  private reconcileAll(): void {
    // Selector matching looks only at the Services of a workload's own
    // namespace, so group them once per pass.
    const byNamespace = new Map<string, V1Service[]>();
    for (const service of this.services.values()) {
      const namespace = service.metadata?.namespace ?? '';
      const list = byNamespace.get(namespace);
      if (list) list.push(service);
      else byNamespace.set(namespace, [service]);
    }

    const seen = new Set<WorkloadKey>();
    for (const object of this.objects.values()) {
      const key = `${object.metadata?.namespace}/${object.metadata?.name}`;
      seen.add(key);
      this.reconcile(key, object, byNamespace);
    }
    for (const key of this.workloads.keys()) {
      if (!seen.has(key)) this.forget(key);
    }
  }

  private reconcile(key: WorkloadKey, object: ScaleToZero, byNamespace: Map<string, V1Service[]>): void {
    let spec: WorkloadSpec;
    try {
      spec = workloadFromScaleToZero(object);
    } catch (err) {
      if (!(err instanceof InvalidWorkloadError)) throw err;
      this.reportInvalid(object, err.problems);
      return;
    }

    const target = this.targets.get(`${spec.target.kind}|${spec.namespace}/${spec.target.name}`);
    const services = this.servicesOf(spec, target, byNamespace);
    const frontends = services.flatMap((name) => {
      const service = this.services.get(`${spec.namespace}/${name}`);
      return service ? resolveFrontends(service, this.options.nodeAddresses).frontends : [];
    });
    const replicas = target?.spec?.replicas ?? 0;

    let workload = this.workloads.get(key);
    if (!workload) {
      workload = { spec, object, services, state: initialPhase(replicas), replicas, appliedScaleDownId: null, pendingScaleDown: null, lastActivityMs: this.now() };
      this.workloads.set(key, workload);
      this.options.log.info({ workload: key, services, frontends: frontends.length, phase: workload.state.phase }, 'tracking workload');
    }
    Object.assign(workload, { spec, object, services, replicas });

    this.options.datapath.setFrontends(key, frontends, workload.state.gateClosed);
    this.options.readiness.track(key, spec.namespace, services);
    this.followStatus(key, workload);
    this.observe(key);
  }

  // Applies the leader's decisions published in status: close the gate for
  // a new scale-down, reopen it when the scale-down was called off.
  private followStatus(key: WorkloadKey, workload: Workload): void {
    const status = statusOf(workload.object);
    if (status.phase === 'ScalingDown' && status.scaleDownId && status.scaleDownId !== workload.appliedScaleDownId) {
      workload.appliedScaleDownId = status.scaleDownId;
      this.feed(key, { type: 'scale-down-begun', nowMs: this.now() });
    } else if ((status.phase === 'Warm' || status.phase === 'Waking') && workload.state.phase === 'ScalingDown') {
      workload.appliedScaleDownId = null;
      this.feed(key, { type: 'scale-down-aborted', nowMs: this.now() });
    }
  }

  private servicesOf(spec: WorkloadSpec, target: V1Deployment | V1StatefulSet | undefined, byNamespace: Map<string, V1Service[]>): string[] {
    if (spec.services) return spec.services;
    const labels = target?.spec?.template?.metadata?.labels;
    return (byNamespace.get(spec.namespace) ?? []).filter((s) => selectorMatches(s.spec?.selector, labels)).map((s) => s.metadata!.name!);
  }

  private observe(key: WorkloadKey): void {
    const workload = this.workloads.get(key);
    if (!workload) return;
    this.feed(key, { type: 'observed', replicas: workload.replicas, readyEndpoints: this.options.readiness.readyCount(key), nowMs: this.now() });
  }

  private tick(): void {
    const now = this.now();
    const leader = this.options.isLeader();
    this.publishReport(now);

    for (const [key, workload] of this.workloads) {
      this.feed(key, { type: 'tick', nowMs: now });
      // Only a leader scales down, and never while an autoscaler keeps
      // the workload above its floor for reasons other than traffic.
      const mayScaleDown = leader && !this.heldByAutoscaler(workload);
      this.feed(key, { type: 'idle-check', lastActivityMs: this.lastActivity(key, workload, now), nowMs: now, leader: mayScaleDown });
      if (leader) this.checkScaleDown(key, workload, now);
    }
  }

  // Tells whether a HorizontalPodAutoscaler on the workload wants more
  // replicas than its minimum, which means its metrics, not traffic, keep
  // the workload up (a queue length, CPU of background work). An HPA at its
  // minimum does not object: at zero replicas it stays inactive, and it
  // resumes once a wake brings the workload back.
  private heldByAutoscaler(workload: Workload): boolean {
    for (const hpa of this.autoscalers.values()) {
      const ref = hpa.spec?.scaleTargetRef;
      if (hpa.metadata?.namespace !== workload.spec.namespace || ref?.kind !== workload.spec.target.kind || ref?.name !== workload.spec.target.name) continue;
      if ((hpa.status?.desiredReplicas ?? 0) > (hpa.spec?.minReplicas ?? 1)) return true;
    }
    return false;
  }

  // The latest activity anywhere in the cluster, on this process's
  // monotonic clock. Reports carry Unix time, converted by the offset
  // between the two clocks now.
  private lastActivity(key: WorkloadKey, workload: Workload, now: number): number {
    const candidates = [workload.lastActivityMs, this.options.activity.lastActivity(key), workload.state.warmSinceMs ?? undefined];
    const remote = this.options.reports?.lastActivity(key);
    if (remote !== undefined) candidates.push(now - (Date.now() - remote));
    workload.lastActivityMs = Math.max(...candidates.filter((c): c is number => c !== undefined));
    return workload.lastActivityMs;
  }

  private publishReport(now: number): void {
    const reports = this.options.reports;
    if (!reports || now - this.lastReportMs < (this.options.reportIntervalMs ?? 10_000)) return;
    this.lastReportMs = now;

    const activity = new Map<WorkloadKey, number>();
    const closed = new Map<WorkloadKey, string>();
    for (const [key, workload] of this.workloads) {
      const local = this.options.activity.lastActivity(key);
      if (local !== undefined) activity.set(key, Date.now() - (now - local));
      if (workload.state.phase === 'ScalingDown' && workload.state.gateClosed && workload.appliedScaleDownId) {
        closed.set(key, workload.appliedScaleDownId);
      }
    }
    reports.publish(activity, closed).catch((err: Error) => {
      this.options.metrics?.apiErrors.inc({ operation: 'publish-report' });
      this.options.log.warn({ err }, 'publishing the node report failed');
    });
  }

  // Leader: scales to zero once every live node keeps new flows, or calls
  // the scale-down off when one does not close its gate in time.
  private checkScaleDown(key: WorkloadKey, workload: Workload, now: number): void {
    const pending = workload.pendingScaleDown;
    if (!pending) return;
    const timeoutMs = this.options.scaleDownTimeoutMs ?? 60_000;

    // Idle until this node's own informer delivers the announced status.
    // If the status write was lost, announce again after the timeout.
    if (workload.state.phase === 'Idle') {
      if (now - pending.startedMs > timeoutMs) workload.pendingScaleDown = null;
      return;
    }
    if (workload.state.phase !== 'ScalingDown') {
      workload.pendingScaleDown = null;
      return;
    }

    const open = this.options.reports?.nodesWithOpenGate(key, pending.id) ?? (workload.state.gateClosed ? [] : ['this node']);
    if (open.length === 0) {
      workload.pendingScaleDown = null;
      this.feed(key, { type: 'all-gates-closed', nowMs: now, leader: true });
      return;
    }
    if (now - pending.startedMs > timeoutMs) {
      workload.pendingScaleDown = null;
      void this.options.events.record(this.referenceOf(workload), 'Warning', 'ScaleDownAborted', `nodes did not close their gate in time: ${open.join(', ')}`);
      void this.patchStatus(workload, { phase: 'Warm', scaleDownId: null }).catch((err: Error) => this.options.log.warn({ err, workload: key }, 'writing status failed'));
      this.feed(key, { type: 'scale-down-aborted', nowMs: now });
    }
  }

  private referenceOf(workload: Workload) {
    return { apiVersion: `${GROUP}/${VERSION}`, kind: 'ScaleToZero', name: workload.object.metadata!.name!, namespace: workload.spec.namespace, uid: workload.object.metadata?.uid };
  }

  private feed(key: WorkloadKey, event: PhaseEvent): void {
    const workload = this.workloads.get(key);
    if (!workload) return;

    const before = workload.state;
    const { state, actions } = nextPhase(before, event, workload.spec);
    workload.state = state;
    if (state.phase !== before.phase) {
      this.options.log.info({ workload: key }, `${before.phase} -> ${state.phase}`);
    }
    for (const action of actions) {
      // Events are reports: they wait a turn so that a scale-up request
      // leaves first on a wake.
      if (action.type === 'event') setImmediate(() => void this.apply(key, workload, before, action, event.nowMs));
      else void this.apply(key, workload, before, action, event.nowMs);
    }
  }

  // eventMs is when the event that caused the action was observed, so the
  // release overhead runs from the Ready endpoint to the re-injection.
  private async apply(key: WorkloadKey, workload: Workload, before: PhaseState, action: PhaseAction, eventMs: number): Promise<void> {
    const { datapath, scaler, events, log, metrics } = this.options;
    const ref = this.referenceOf(workload);

    try {
      switch (action.type) {
        case 'close-gate':
          datapath.closeGate(key);
          return;
        case 'release': {
          const outcome = await datapath.release(key);
          const now = this.now();
          const coldStartMs = before.wakeStartedMs === null ? null : now - before.wakeStartedMs;
          metrics?.releaseOverhead.observe({ workload: key }, (now - eventMs) / 1000);
          log.info({ workload: key, released: outcome.released.length, failed: outcome.failed.length, coldStartMs }, 'released held flows');
          if (coldStartMs !== null) {
            metrics?.coldStart.observe({ workload: key }, coldStartMs / 1000);
            await this.patchStatus(workload, { phase: 'Warm', lastColdStartSeconds: Math.round(coldStartMs) / 1000 });
          }
          return;
        }
        case 'scale':
          if (action.mode === 'at-least') {
            // A wake ends any scale-down in progress, for every node.
            if (statusOf(workload.object).phase === 'ScalingDown') await this.patchStatus(workload, { phase: 'Waking', scaleDownId: null });
            const target = this.targets.get(`${workload.spec.target.kind}|${workload.spec.namespace}/${workload.spec.target.name}`);
            const known = target?.metadata?.resourceVersion ? { replicas: target.spec?.replicas ?? 0, resourceVersion: target.metadata.resourceVersion } : undefined;
            if (await scaler.scaleUp(workload.spec.namespace, workload.spec.target, action.replicas, known)) {
              metrics?.wakes.inc({ workload: key });
              await this.patchStatus(workload, { phase: 'Waking', lastWakeTime: new Date().toISOString() });
            }
          } else if (this.options.isLeader()) {
            await scaler.scaleTo(workload.spec.namespace, workload.spec.target, action.replicas);
            await this.patchStatus(workload, { phase: 'Cold', scaleDownId: null });
            metrics?.scaleDowns.inc({ workload: key });
          }
          return;
        case 'announce-scale-down': {
          if (workload.pendingScaleDown) return;
          const id = randomUUID();
          workload.pendingScaleDown = { id, startedMs: this.now() };
          // Every node, this one included, closes its gate when it reads
          // the id in status; checkScaleDown waits for their reports.
          const lastActivity = new Date(Date.now() - (this.now() - workload.lastActivityMs)).toISOString();
          await this.patchStatus(workload, { phase: 'ScalingDown', scaleDownId: id, lastActivityTime: lastActivity });
          return;
        }
        case 'expire-held': {
          const dropped = datapath.expireHeld(key, this.now());
          metrics?.heldDropped.inc({ workload: key, reason: 'wake-timeout' }, dropped.length);
          log.warn({ workload: key, dropped: dropped.length, reason: action.reason }, 'dropped held flows');
          return;
        }
        case 'event': {
          // On the ScaleToZero and on its target, where `kubectl describe
          // deployment` shows why the replica count changed.
          const type = action.warning ? 'Warning' : 'Normal';
          const target = { ...workload.spec.target, namespace: workload.spec.namespace };
          await Promise.all([events.record(ref, type, action.reason, action.message), events.record(target, type, action.reason, action.message)]);
          return;
        }
      }
    } catch (err) {
      metrics?.apiErrors.inc({ operation: action.type });
      log.error({ err, workload: key, action: action.type }, 'action failed');
    }
  }

  private reportInvalid(object: ScaleToZero, problems: string[]): void {
    const key = `${object.metadata?.namespace}/${object.metadata?.name}`;
    this.forget(key);
    if (!this.options.isLeader()) return;

    const message = problems.join('; ');
    const conditions = (object as { status?: { conditions?: { type: string; message: string }[] } }).status?.conditions ?? [];
    if (conditions.some((c) => c.type === 'Valid' && c.message === message)) return;

    const ref = { apiVersion: `${GROUP}/${VERSION}`, kind: 'ScaleToZero', name: object.metadata!.name!, namespace: object.metadata!.namespace!, uid: object.metadata?.uid };
    void this.options.events.record(ref, 'Warning', 'InvalidConfiguration', message);
    void this.patchStatusOf(object, {
      conditions: [{ type: 'Valid', status: 'False', reason: 'InvalidSpec', message, lastTransitionTime: new Date().toISOString(), observedGeneration: object.metadata?.generation }],
    }).catch((err: Error) => this.options.log.warn({ err, workload: key }, 'writing the invalid condition failed'));
  }

  private patchStatus(workload: Workload, status: Record<string, unknown>): Promise<unknown> {
    return this.patchStatusOf(workload.object, status);
  }

  private patchStatusOf(object: ScaleToZero, status: Record<string, unknown>): Promise<unknown> {
    return this.custom.patchNamespacedCustomObjectStatus(
      { group: GROUP, version: VERSION, plural: PLURAL, namespace: object.metadata!.namespace!, name: object.metadata!.name!, body: { status } },
      MERGE_PATCH,
    );
  }

  private forget(key: WorkloadKey): void {
    if (!this.workloads.delete(key)) return;
    this.options.datapath.removeWorkload(key);
    this.options.readiness.untrack(key);
  }
}
