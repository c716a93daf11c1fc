// The agent's controller: informers on ScaleToZero objects, Services and
// targets feed the lifecycle in phase.ts, and the actions it returns drive
// the datapath, the scale subresource and Events. One controller runs per
// node; the leader alone scales down and writes status.

import {
  ADD,
  AppsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  DELETE,
  ERROR,
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
} from '@kubernetes/client-node';
import type { Logger } from 'pino';

import type { EndpointReadiness } from './endpoint-readiness.js';
import type { EventRecorder } from './events.js';
import type { AgentMetrics } from './metrics.js';
import { initialPhase, nextPhase, type PhaseAction, type PhaseEvent, type PhaseState } from './phase.js';
import type { ActivitySource, DatapathPort, ScalePort, WorkloadKey } from './ports.js';
import { resolveFrontends } from './service-frontends.js';
import { InvalidWorkloadError, selectorMatches, workloadFromScaleToZero, type ScaleToZero, type WorkloadSpec } from './workloads.js';

const GROUP = 'zerohold.dev';
const VERSION = 'v1alpha1';
const PLURAL = 'scaletozeros';
const MERGE_PATCH = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
const RESTART_DELAY_MS = 1000;

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
  tickMs?: number;
  // How long the leader waits after announcing a scale-down before it
  // scales to zero, so every node has closed its gate.
  scaleDownGraceMs?: number;
  // CLOCK_MONOTONIC milliseconds, the clock of held frame timestamps.
  now?: () => number;
}

interface Workload {
  spec: WorkloadSpec;
  object: ScaleToZero;
  services: string[];
  state: PhaseState;
  replicas: number;
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
  private readonly informers: AnyInformer[] = [];
  private readonly custom: CustomObjectsApi;
  private readonly now: () => number;
  private timer: NodeJS.Timeout | null = null;
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

    this.options.datapath.onWake((signal) => this.feed(signal.workload, { type: 'flow-opener', nowMs: this.now() }));
    this.options.readiness.onChange((key) => this.observe(key));

    for (const informer of this.informers) await informer.start();
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
      this.reconcileAll();
    };
    informer.on(ADD, (o) => changed(o, false));
    informer.on(UPDATE, (o) => changed(o, false));
    informer.on(DELETE, (o) => changed(o, true));
    informer.on(ERROR, (err) => {
      if (this.stopped) return;
      this.options.log.warn({ err }, 'watch failed, restarting the informer');
      setTimeout(() => {
        if (!this.stopped) void informer.start();
      }, RESTART_DELAY_MS);
    });
    this.informers.push(informer);
  }

  // Brings every workload in line with the caches. Cheap enough to run on
  // each change at the scale of one cluster's opted-in workloads.
  private reconcileAll(): void {
    const seen = new Set<WorkloadKey>();
    for (const object of this.objects.values()) {
      const key = `${object.metadata?.namespace}/${object.metadata?.name}`;
      seen.add(key);
      this.reconcile(key, object);
    }
    for (const key of this.workloads.keys()) {
      if (!seen.has(key)) this.forget(key);
    }
  }

  private reconcile(key: WorkloadKey, object: ScaleToZero): void {
    let spec: WorkloadSpec;
    try {
      spec = workloadFromScaleToZero(object);
    } catch (err) {
      if (!(err instanceof InvalidWorkloadError)) throw err;
      this.reportInvalid(object, err.problems);
      return;
    }

    const target = this.targets.get(`${spec.target.kind}|${spec.namespace}/${spec.target.name}`);
    const services = this.servicesOf(spec, target);
    const frontends = services.flatMap((name) => {
      const service = this.services.get(`${spec.namespace}/${name}`);
      return service ? resolveFrontends(service, this.options.nodeAddresses).frontends : [];
    });
    const replicas = target?.spec?.replicas ?? 0;

    let workload = this.workloads.get(key);
    if (!workload) {
      workload = { spec, object, services, state: initialPhase(replicas), replicas };
      this.workloads.set(key, workload);
    }
    Object.assign(workload, { spec, object, services, replicas });

    this.options.datapath.setFrontends(key, frontends, workload.state.gateClosed);
    this.options.readiness.track(key, spec.namespace, services);
    if ((object as { status?: { phase?: string } }).status?.phase === 'ScalingDown') {
      this.feed(key, { type: 'scale-down-begun', nowMs: this.now() });
    }
    this.observe(key);
  }

  private servicesOf(spec: WorkloadSpec, target: V1Deployment | V1StatefulSet | undefined): string[] {
    if (spec.services) return spec.services;
    const labels = target?.spec?.template?.metadata?.labels;
    return [...this.services.values()]
      .filter((s) => s.metadata?.namespace === spec.namespace && selectorMatches(s.spec?.selector, labels))
      .map((s) => s.metadata!.name!);
  }

  private observe(key: WorkloadKey): void {
    const workload = this.workloads.get(key);
    if (!workload) return;
    this.feed(key, { type: 'observed', replicas: workload.replicas, readyEndpoints: this.options.readiness.readyCount(key), nowMs: this.now() });
  }

  private tick(): void {
    const now = this.now();
    for (const [key, workload] of this.workloads) {
      this.feed(key, { type: 'tick', nowMs: now });
      // TODO: take the cluster-wide activity from every node's report, not
      // this node's alone, before more than one agent runs.
      const last = this.options.activity.lastActivity(key) ?? workload.state.warmSinceMs ?? now;
      this.feed(key, { type: 'idle-check', lastActivityMs: last, nowMs: now, leader: this.options.isLeader() });
    }
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
    for (const action of actions) void this.apply(key, workload, before, action, event.nowMs);
  }

  // eventMs is when the event that caused the action was observed, so the
  // release overhead runs from the Ready endpoint to the re-injection.
  private async apply(key: WorkloadKey, workload: Workload, before: PhaseState, action: PhaseAction, eventMs: number): Promise<void> {
    const { datapath, scaler, events, log, metrics } = this.options;
    const ref = { apiVersion: `${GROUP}/${VERSION}`, kind: 'ScaleToZero', name: workload.object.metadata!.name!, namespace: workload.spec.namespace, uid: workload.object.metadata?.uid };

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
          if (coldStartMs !== null) metrics?.coldStart.observe({ workload: key }, coldStartMs / 1000);
          log.info({ workload: key, released: outcome.released.length, failed: outcome.failed.length, coldStartMs }, 'released held flows');
          return;
        }
        case 'scale':
          if (action.mode === 'at-least') {
            if (await scaler.scaleUp(workload.spec.namespace, workload.spec.target, action.replicas)) metrics?.wakes.inc({ workload: key });
          } else if (this.options.isLeader()) {
            await scaler.scaleTo(workload.spec.namespace, workload.spec.target, action.replicas);
            metrics?.scaleDowns.inc({ workload: key });
          }
          return;
        case 'announce-scale-down':
          await this.patchStatus(workload, { phase: 'ScalingDown' });
          // TODO: wait for every live node to report its gate closed
          // instead of a fixed grace period.
          setTimeout(() => this.feed(key, { type: 'all-gates-closed', nowMs: this.now(), leader: this.options.isLeader() }), this.options.scaleDownGraceMs ?? 2000);
          return;
        case 'expire-held': {
          const dropped = datapath.expireHeld(key, this.now());
          metrics?.heldDropped.inc({ workload: key, reason: 'wake-timeout' }, dropped.length);
          log.warn({ workload: key, dropped: dropped.length, reason: action.reason }, 'dropped held flows');
          return;
        }
        case 'event':
          await events.record(ref, action.warning ? 'Warning' : 'Normal', action.reason, action.message);
          return;
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
