// The agent's controller: informers on ScaleToZero objects, Services and
// targets feed the lifecycle in phase.ts, and the actions it returns drive
// the datapath, the scale subresource and Events. A workload opts in
// through a ScaleToZero or through the zerohold.dev/idle-timeout annotation
// on its Service. A ScaleToZero that covers a Service takes precedence over
// the Service's annotation. One controller runs per node, and the leader
// alone scales down.

import {
  ADD,
  AppsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  DELETE,
  type Informer,
  KubeConfig,
  type KubernetesObject,
  makeInformer,
  UPDATE,
  type V1Deployment,
  type V1Service,
  type V1StatefulSet,
} from '@kubernetes/client-node';
import { randomUUID } from 'node:crypto';

import type { Logger } from 'pino';

import { Autoscalers } from './autoscalers.js';
import type { EndpointReadiness } from './endpoint-readiness.js';
import type { EventRecorder } from './events.js';
import { restartOnError } from './informers.js';
import { type ListenCheck, type ListenOutcome, ListenRounds, listenTargetToString } from './listen-check.js';
import { listenTargetsOf } from './listen-targets.js';
import type { AgentMetrics } from './metrics.js';
import type { NodeReports } from './node-reports.js';
import { initialPhase, nextPhase, type PhaseAction, type PhaseEvent, type PhaseState } from './phase.js';
import { type Frontend, frontendToString } from '../datapath/frontends.js';
import { monotonicMs } from '../hubble/monotonic-time.js';
import type { ActivitySource, BackendCheck, DatapathPort, ReleaseOutcome, ScalePort, TargetRef, WakeSignal, WorkloadKey } from './ports.js';
import { ScaleTargets, scaleTargetKey } from './scale-targets.js';
import { resolveFrontends } from './service-frontends.js';
import { readStatus, readyCondition, SCALE_TO_ZERO, setCondition, StatusWriter, type Condition, type WorkloadStatus } from './workload-status.js';
import {
  annotationWorkloadKey,
  IDLE_TIMEOUT_ANNOTATION,
  InvalidWorkloadError,
  selectorMatches,
  workloadFromAnnotation,
  workloadFromScaleToZero,
  type ScaleToZero,
  type WorkloadSpec,
} from './workloads.js';

const { group: GROUP, version: VERSION, plural: PLURAL } = SCALE_TO_ZERO;

// A node publishes its report early, at most this often, when the flows it
// holds change, so status.heldFlows follows a wake within seconds.
const HELD_REPORT_MIN_INTERVAL_MS = 1000;

// The leader's status writes per tick. Many workloads changing at once,
// such as a burst of wakes, spread their writes over several ticks instead
// of sending the API server, and the agent's event loop, a burst.
const STATUS_WRITES_PER_TICK = 10;
// The wait before a failed scale-up of a wake is tried again, doubling
// with each attempt up to the maximum.
const SCALE_UP_RETRY_FIRST_MS = 500;
const SCALE_UP_RETRY_MAX_MS = 10_000;

// How long start() waits for the first /scale reads of targets other than
// Deployments and StatefulSets.
const SCALE_READ_AT_START_MS = 5000;

export interface ControllerOptions {
  kc: KubeConfig;
  nodeAddresses: string[];
  datapath: DatapathPort;
  readiness: EndpointReadiness;
  scaler: ScalePort;
  events: EventRecorder;
  activity: ActivitySource;
  // Checked before a release, so that the re-injected packets find a
  // backend in this node's load balancer. Without it, the Ready endpoint
  // alone allows the release.
  backendCheck?: BackendCheck;
  // How long a release waits for the backend check before it re-injects
  // anyway; the client then retransmits if the packet missed.
  backendCheckTimeoutMs?: number;
  // Checked before a release too, so that re-injected SYNs and datagrams
  // find a server that listens or has bound its port. Without it, the
  // Ready endpoint alone allows the release.
  listenCheck?: ListenCheck;
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

export interface WorkloadSnapshot {
  key: WorkloadKey;
  spec: WorkloadSpec;
  services: string[];
  state: PhaseState;
  // As last read from the API: the cluster-wide view.
  status: WorkloadStatus;
  // The conditions this node waits for before the held flows go out, in
  // words: "a Ready endpoint" while the workload wakes, then endpoints that
  // do not listen yet ("198.18.7.1:53/udp to listen") and the node's load
  // balancer. Empty when nothing waits.
  waitingFor: string[];
}

// The conditions that one release in progress waits for.
interface ReleaseWait {
  rounds: ListenRounds | undefined;
  loadBalancer: boolean;
}

interface Workload {
  spec: WorkloadSpec;
  // The ScaleToZero or, for the annotation shortcut, the Service.
  object: KubernetesObject;
  services: string[];
  frontends: Frontend[];
  state: PhaseState;
  // Releases in progress, from the release decision until the datapath
  // opened the gate: the phase is already Warm, but the gate must stay
  // closed while a release waits for the backend check. A count, because
  // the gate can close and open again while one waits.
  releasing: number;
  // The conditions of those releases, for snapshot().
  releaseWaits: Set<ReleaseWait>;
  replicas: number;
  // The replica count of the last observation fed to the phase.
  observedReplicas: number;
  // The scale-down this node closed its gate for, from status.scaleDownId.
  appliedScaleDownId: string | null;
  // Leader only: the scale-down it announced, or took over from status,
  // and when.
  pendingScaleDown: { id: string; startedMs: number } | null;
  // Leader only: true while its write of zero is in flight.
  scalingToZero: boolean;
  // A wake's scale-up that failed, and when to try it again, while the
  // phase is Waking.
  scaleUpRetry: { atMs: number; attempts: number } | null;
  // Latest activity known from any source, or when this agent started
  // tracking the workload; a source that stops reporting keeps it.
  lastActivityMs: number;
  // Leader only: the held-flow count and Ready condition it last wrote, so
  // an unchanged status is not written again.
  writtenStatus: string | null;
}

function statusOf(workload: Workload): WorkloadStatus {
  return readStatus(workload.spec.source, workload.object);
}

function waitingFor(workload: Workload): string[] {
  // A closed gate ends every release in progress, though their checks may
  // still run out their timeouts.
  if (workload.state.gateClosed) return workload.state.phase === 'Waking' ? ['a Ready endpoint'] : [];

  const items = new Set<string>();
  for (const wait of workload.releaseWaits) {
    for (const name of wait.rounds?.notListening.keys() ?? []) items.add(`${name} to listen`);
    if (wait.loadBalancer) items.add("the node's load balancer");
  }
  return [...items];
}

function targetKey(namespace: string, kind: string, name: string): string {
  return `${kind}|${namespace}/${name}`;
}

// The controller's view of a workload's target: its replica count and the
// labels its pods carry, as far as they are known.
interface TargetView {
  replicas: number;
  podLabels: Record<string, string> | undefined;
}

// Deployments and StatefulSets come from the agent's informers; other
// kinds from their /scale subresource.
function informerKind(target: TargetRef): boolean {
  return target.apiVersion === 'apps/v1' && (target.kind === 'Deployment' || target.kind === 'StatefulSet');
}

// The labels that an equality-based selector such as "app=web,tier=front"
// requires, which every pod of the target carries. undefined for a
// selector with set-based terms, from which no labels follow.
function labelsOfSelector(selector: string | undefined): Record<string, string> | undefined {
  if (!selector) return undefined;
  const labels: Record<string, string> = {};
  for (const term of selector.split(',')) {
    const match = /^\s*([^\s=!]+)\s*==?\s*([^\s=!]*)\s*$/.exec(term);
    if (!match) return undefined;
    labels[match[1]!] = match[2]!;
  }
  return labels;
}

type AnyInformer = Informer<KubernetesObject>;

// The scale targets and Services ("namespace/name") that the declarations
// reconciled so far claimed, each with its holder, such as "ScaleToZero
// shop/web". A Service's claim also names the holder's kind and target.
interface Claims {
  targets: Map<string, string>;
  services: Map<string, { holder: string; source: WorkloadSpec['source']; target: string }>;
}

// Sorts by creation time, then by namespace and name, so that every node
// picks the same declaration of two for one target.
function oldestFirst<T extends KubernetesObject>(objects: Iterable<T>): T[] {
  const keyed = [...objects].map((object) => {
    const created = object.metadata?.creationTimestamp;
    // client-node decodes built-in kinds' timestamps to Date, and custom
    // objects keep the RFC 3339 string.
    const time = created === undefined ? '' : new Date(created).toISOString();
    return { object, sortKey: `${time}|${object.metadata?.namespace}/${object.metadata?.name}` };
  });
  // By code point, not localeCompare(), whose order depends on the ICU
  // version of each node's Node.js.
  keyed.sort((a, b) => {
    if (a.sortKey === b.sortKey) return 0;
    return a.sortKey < b.sortKey ? -1 : 1;
  });
  return keyed.map(({ object }) => object);
}

// Identifies a scale target across API versions of its group.
function ownedTargetKey(namespace: string, target: TargetRef): string {
  const group = target.apiVersion.includes('/') ? target.apiVersion.split('/')[0] : '';
  return `${group}|${target.kind}|${namespace}/${target.name}`;
}

function describeTarget(spec: WorkloadSpec): string {
  return `${spec.target.kind} ${spec.namespace}/${spec.target.name}`;
}

function groupByNamespace<T extends KubernetesObject>(objects: Iterable<T>): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const object of objects) {
    const namespace = object.metadata?.namespace ?? '';
    const list = groups.get(namespace);
    if (list) list.push(object);
    else groups.set(namespace, [object]);
  }
  return groups;
}

// The object that declared a workload, as an Event's involvedObject.
function referenceTo(source: WorkloadSpec['source'], object: KubernetesObject) {
  const { name, namespace, uid } = object.metadata!;
  if (source === 'ScaleToZero') return { apiVersion: `${GROUP}/${VERSION}`, kind: 'ScaleToZero', name: name!, namespace: namespace!, uid };
  return { apiVersion: 'v1', kind: 'Service', name: name!, namespace: namespace!, uid };
}

// The phase event of a flow opener, with the client and the frontend as
// the Woken Event names them.
function flowOpener(flow: WakeSignal['flow'], nowMs: number, service?: string): PhaseEvent {
  const host = (address: string) => (address.includes(':') ? `[${address}]` : address);
  return {
    type: 'flow-opener',
    nowMs,
    client: `${host(flow.source)}:${flow.sourcePort}`,
    frontend: `${flow.protocol}/${host(flow.destination)}:${flow.destinationPort}${service ? ` (Service ${service})` : ''}`,
  };
}

export class Controller {
  private readonly workloads = new Map<WorkloadKey, Workload>();
  private readonly objects = new Map<string, ScaleToZero>();
  private readonly services = new Map<string, V1Service>();
  private readonly targets = new Map<string, V1Deployment | V1StatefulSet>();
  private readonly informers: AnyInformer[] = [];
  private readonly custom: CustomObjectsApi;
  private readonly status: StatusWriter;
  private readonly autoscalers: Autoscalers;
  private readonly scaleTargets: ScaleTargets;
  private readonly now: () => number;
  private timer: NodeJS.Timeout | null = null;
  private lastReportMs = -Infinity;
  private lastReportedHeld = '';
  private reconcileScheduled = false;
  // False until every informer has listed. Reconciling with some caches
  // still empty would remove frontends that a restarted agent found pinned.
  private started = false;
  private stopped = false;

  constructor(private readonly options: ControllerOptions) {
    this.custom = options.kc.makeApiClient(CustomObjectsApi);
    this.status = new StatusWriter(options.kc);
    this.autoscalers = new Autoscalers(options.kc, options.log);
    this.scaleTargets = new ScaleTargets({ scaler: options.scaler, log: options.log, onChange: () => this.scheduleReconcile() });
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

    this.options.datapath.onWake((signal) => this.feed(signal.workload, flowOpener(signal.flow, this.now(), signal.service)));
    this.options.readiness.onChange((key) => this.observe(key));

    for (const informer of this.informers) await informer.start();
    await this.autoscalers.start();
    // Targets of other kinds are read once first, so that their workloads
    // are installed too when start() returns, unless the API server does
    // not respond within SCALE_READ_AT_START_MS.
    await this.scaleTargets.readAll(this.polledTargets(), SCALE_READ_AT_START_MS);
    // The caches are complete now: install every workload before start()
    // returns, so the node keeps flow openers from then on.
    this.started = true;
    this.reconcileAll();
    this.scaleTargets.start();
    this.timer = setInterval(() => this.tick(), this.options.tickMs ?? 1000);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.scaleTargets.stop();
    for (const informer of this.informers) await informer.stop();
    await this.autoscalers.stop();
  }

  phaseOf(key: WorkloadKey): PhaseState | undefined {
    return this.workloads.get(key)?.state;
  }

  // "namespace/name" of each Service of a tracked workload.
  serviceNames(key: WorkloadKey): string[] {
    const workload = this.workloads.get(key);
    return workload ? workload.services.map((name) => `${workload.spec.namespace}/${name}`) : [];
  }

  // Every workload this node tracks, for the local API.
  snapshot(): WorkloadSnapshot[] {
    return [...this.workloads].map(([key, workload]) => ({
      key,
      spec: workload.spec,
      services: workload.services,
      state: workload.state,
      status: statusOf(workload),
      waitingFor: waitingFor(workload),
    }));
  }

  private watch(informer: AnyInformer, cache: Map<string, KubernetesObject>, kind?: string): void {
    const keyOf = (o: KubernetesObject) => `${kind ? `${kind}|` : ''}${o.metadata?.namespace ?? ''}/${o.metadata?.name ?? ''}`;
    const changed = (o: KubernetesObject, deleted: boolean) => {
      // Items of a list response carry no kind, and the annotation
      // shortcut needs it to name its target.
      if (kind && !o.kind) o.kind = kind;
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
    if (this.reconcileScheduled || !this.started) return;
    this.reconcileScheduled = true;
    setImmediate(() => {
      this.reconcileScheduled = false;
      if (!this.stopped) this.reconcileAll();
    });
  }

  // Brings every workload in line with the caches.
  private reconcileAll(): void {
    // Selector matching looks only at the objects of a workload's own
    // namespace, so group them once per pass.
    const services = groupByNamespace(this.services.values());
    const targets = groupByNamespace(this.targets.values());
    const seen = new Set<WorkloadKey>();
    const claims: Claims = { targets: new Map(), services: new Map() };

    this.reconcileScaleToZeros(services, seen, claims);
    this.reconcileAnnotations(services, targets, seen, claims);

    for (const key of this.workloads.keys()) {
      if (!seen.has(key)) this.forget(key);
    }
  }

  // ScaleToZeros go first and oldest first, because a valid ScaleToZero
  // takes precedence over annotations, and the oldest of two for one
  // target wins.
  private reconcileScaleToZeros(services: Map<string, V1Service[]>, seen: Set<WorkloadKey>, claims: Claims): void {
    const polled = new Set<string>();
    for (const object of oldestFirst(this.objects.values())) {
      const key = `${object.metadata?.namespace}/${object.metadata?.name}`;
      seen.add(key);
      const spec = this.validate(key, object, 'ScaleToZero', () => workloadFromScaleToZero(object));
      if (!spec) continue;
      const holder = `ScaleToZero ${key}`;
      const targetKey = ownedTargetKey(spec.namespace, spec.target);
      const owner = claims.targets.get(targetKey);
      if (owner !== undefined) {
        this.reportInvalid(key, object, spec.source, [`spec.targetRef: ${describeTarget(spec)} is already scaled by ${owner}; delete one of the two`]);
        continue;
      }
      if (!informerKind(spec.target)) polled.add(scaleTargetKey(spec.namespace, spec.target));

      // A target not read yet is not scaled. A workload whose target
      // changed to one not read yet is forgotten meanwhile, so that the
      // old target, which no longer opts in, is not scaled either. It
      // keeps the target meanwhile, so that an annotation does not take
      // it over until the first read.
      const target = this.targetView(spec);
      if (target === undefined) {
        claims.targets.set(targetKey, holder);
        const tracked = this.workloads.get(key);
        if (tracked && scaleTargetKey(tracked.spec.namespace, tracked.spec.target) !== scaleTargetKey(spec.namespace, spec.target)) this.forget(key);
        continue;
      }
      if ('problem' in target) {
        this.reportInvalid(key, object, spec.source, [target.problem]);
        continue;
      }
      if (this.reconcile(key, spec, object, services, target, claims, holder)) claims.targets.set(targetKey, holder);
    }
    this.scaleTargets.retain(polled);
  }

  // An annotated Service that a ScaleToZero covers is left to it. Only
  // annotated Services are sorted, because a cluster has thousands of
  // Services and reconciles after every change to one.
  private reconcileAnnotations(services: Map<string, V1Service[]>, targets: Map<string, (V1Deployment | V1StatefulSet)[]>, seen: Set<WorkloadKey>, claims: Claims): void {
    const annotated = [...this.services.values()].filter((service) => service.metadata?.annotations?.[IDLE_TIMEOUT_ANNOTATION] !== undefined);
    for (const service of oldestFirst(annotated)) {
      const namespace = service.metadata?.namespace ?? '';
      const name = service.metadata?.name ?? '';
      const claim = claims.services.get(`${namespace}/${name}`);
      const target = this.annotationTarget(service, targets.get(namespace) ?? []);
      // A ScaleToZero of the same target takes precedence silently.
      if (claim?.source === 'ScaleToZero' && target !== null && claim.target === ownedTargetKey(namespace, target)) continue;

      const key = annotationWorkloadKey(namespace, name);
      seen.add(key);
      if (claim?.source === 'ScaleToZero') {
        this.reportInvalid(key, service, 'annotation', [`the Service already belongs to the workload of ${claim.holder}, which scales another target; remove this annotation`]);
        continue;
      }
      if (claim !== undefined) {
        this.reportInvalid(key, service, 'annotation', [`the Service already belongs to the workload of ${claim.holder}, which takes in every Service that selects its pods; remove this annotation`]);
        continue;
      }
      const spec = this.validate(key, service, 'annotation', () => workloadFromAnnotation(service, target));
      if (!spec) continue;
      const targetKey = ownedTargetKey(spec.namespace, spec.target);
      const owner = claims.targets.get(targetKey);
      if (owner !== undefined) {
        this.reportInvalid(key, service, spec.source, [`${describeTarget(spec)} is already scaled by ${owner}; remove the annotation, or list this Service in the spec.services of ${owner}`]);
        continue;
      }
      const view = this.targetView(spec);
      const holder = `the annotation on Service ${namespace}/${name}`;
      if (view && !('problem' in view) && this.reconcile(key, spec, service, services, view, claims, holder)) claims.targets.set(targetKey, holder);
    }
  }

  // Returns the spec, or null after reporting why the declaration is
  // invalid. An invalid workload is forgotten, so nothing scales it.
  private validate(key: WorkloadKey, object: KubernetesObject, source: WorkloadSpec['source'], parse: () => WorkloadSpec | null): WorkloadSpec | null {
    try {
      return parse();
    } catch (err) {
      if (!(err instanceof InvalidWorkloadError)) throw err;
      this.reportInvalid(key, object, source, err.problems);
      return null;
    }
  }

  // The one Deployment or StatefulSet whose pods the Service selects, or
  // null when there is none or more than one.
  private annotationTarget(service: V1Service, candidates: (V1Deployment | V1StatefulSet)[]): TargetRef | null {
    const matches = candidates.filter((t) => selectorMatches(service.spec?.selector, t.spec?.template?.metadata?.labels));
    if (matches.length !== 1) return null;
    const [target] = matches;
    return { apiVersion: 'apps/v1', kind: target!.kind!, name: target!.metadata!.name! };
  }

  // Returns the targets of valid ScaleToZeros whose replica count only
  // their /scale subresource reports.
  private polledTargets(): { namespace: string; target: TargetRef }[] {
    const polled: { namespace: string; target: TargetRef }[] = [];
    for (const object of this.objects.values()) {
      try {
        const spec = workloadFromScaleToZero(object);
        if (!informerKind(spec.target)) polled.push({ namespace: spec.namespace, target: spec.target });
      } catch (err) {
        if (!(err instanceof InvalidWorkloadError)) throw err;
      }
    }
    return polled;
  }

  // The target's replica count and pod labels, a problem that makes the
  // workload invalid, or undefined while its scale has not been read.
  private targetView(spec: WorkloadSpec): TargetView | { problem: string } | undefined {
    const { namespace, target } = spec;
    if (informerKind(target)) {
      const object = this.targets.get(targetKey(namespace, target.kind, target.name));
      if (!object) return { problem: `spec.targetRef: ${target.kind} ${namespace}/${target.name} not found` };
      return { replicas: object.spec?.replicas ?? 0, podLabels: object.spec?.template?.metadata?.labels };
    }

    const reading = this.scaleTargets.get(namespace, target);
    if (reading === undefined || 'problem' in reading) return reading;
    return { replicas: reading.scale.replicas, podLabels: labelsOfSelector(reading.scale.selector) };
  }

  // Installs or updates the workload and claims its Services for holder.
  // Returns false after reporting it invalid, for example when no Service
  // can reach it, because nothing could wake it once it is at zero.
  // A Service belongs to one workload, because each frontend in the
  // datapath names one. So a Service that an earlier declaration claimed
  // is left out when the Services come from the selector, and makes the
  // workload invalid when spec.services names it.
  private reconcile(key: WorkloadKey, spec: WorkloadSpec, object: KubernetesObject, byNamespace: Map<string, V1Service[]>, target: TargetView, claims: Claims, holder: string): boolean {
    const candidates = this.servicesOf(spec, target.podLabels, byNamespace);
    const claimedElsewhere = candidates.filter((name) => claims.services.has(`${spec.namespace}/${name}`));
    const belongsTo = (name: string) => `Service ${spec.namespace}/${name} belongs to the workload of ${claims.services.get(`${spec.namespace}/${name}`)?.holder}`;
    if (spec.services !== null && claimedElsewhere.length > 0) {
      this.reportInvalid(key, object, spec.source, [`spec.services: ${claimedElsewhere.map(belongsTo).join('; ')}; a Service can wake one workload only`]);
      return false;
    }
    const services = candidates.filter((name) => !claimedElsewhere.includes(name));
    const skipped: string[] = [];
    const frontends = services.flatMap((name) => {
      const service = this.services.get(`${spec.namespace}/${name}`);
      if (!service) {
        skipped.push(`Service ${spec.namespace}/${name} not found`);
        return [];
      }
      const resolved = resolveFrontends(service, this.options.nodeAddresses);
      skipped.push(...resolved.skipped.map((reason) => `Service ${spec.namespace}/${name}: ${reason}`));
      return resolved.frontends;
    });
    if (frontends.length === 0) {
      let reasons = skipped;
      if (candidates.length === 0) reasons = [`no Service in ${spec.namespace} selects the pods of ${spec.target.kind} ${spec.target.name}; name the Services in spec.services`];
      else if (services.length === 0) reasons = claimedElsewhere.map(belongsTo);
      this.reportInvalid(key, object, spec.source, [`nothing could wake the workload, because no Service of it has a frontend: ${reasons.join('; ')}`]);
      return false;
    }
    const claim = { holder, source: spec.source, target: ownedTargetKey(spec.namespace, spec.target) };
    for (const name of services) claims.services.set(`${spec.namespace}/${name}`, claim);
    const { replicas } = target;
    // Before the initial phase, which depends on the Ready count.
    this.options.readiness.track(key, spec.namespace, services);

    let workload = this.workloads.get(key);
    if (!workload) {
      workload = {
        spec,
        object,
        services,
        frontends,
        state: initialPhase(replicas, this.options.readiness.readyCount(key), this.now(), readStatus(spec.source, object).phase, this.options.datapath.pinnedGateClosed?.(frontends) ?? false),
        releasing: 0,
        releaseWaits: new Set(),
        replicas,
        observedReplicas: replicas,
        appliedScaleDownId: null,
        pendingScaleDown: null,
        scalingToZero: false,
        scaleUpRetry: null,
        lastActivityMs: this.now(),
        writtenStatus: null,
      };
      this.workloads.set(key, workload);
      this.options.metrics?.trackWorkload(key);
      this.options.log.info({ workload: key, source: spec.source, services, frontends: frontends.length, phase: workload.state.phase }, 'tracking workload');
    }
    Object.assign(workload, { spec, object, services, frontends, replicas });

    this.options.datapath.setFrontends(key, frontends, workload.state.gateClosed || workload.releasing > 0);
    this.options.datapath.setHeldLimits(key, { perService: spec.heldFlowsPerService, perClient: spec.heldFlowsPerClient });
    this.followStatus(key, workload);
    this.observe(key);
    return true;
  }

  // Applies the leader's decisions published in status: close the gate for
  // a new scale-down, reopen it when the scale-down was called off.
  private followStatus(key: WorkloadKey, workload: Workload): void {
    const status = statusOf(workload);
    if (status.phase === 'ScalingDown' && status.scaleDownId && status.scaleDownId !== workload.appliedScaleDownId) {
      workload.appliedScaleDownId = status.scaleDownId;
      this.feed(key, { type: 'scale-down-begun', nowMs: this.now() });
    } else if ((status.phase === 'Warm' || status.phase === 'Waking') && workload.state.phase === 'ScalingDown') {
      workload.appliedScaleDownId = null;
      this.feed(key, { type: 'scale-down-aborted', nowMs: this.now() });
    }
  }

  private servicesOf(spec: WorkloadSpec, podLabels: Record<string, string> | undefined, byNamespace: Map<string, V1Service[]>): string[] {
    if (spec.services) return spec.services;
    return (byNamespace.get(spec.namespace) ?? []).filter((s) => selectorMatches(s.spec?.selector, podLabels)).map((s) => s.metadata!.name!);
  }

  private observe(key: WorkloadKey): void {
    const workload = this.workloads.get(key);
    if (!workload) return;
    const replicasBefore = workload.observedReplicas;
    workload.observedReplicas = workload.replicas;
    this.feed(key, { type: 'observed', replicas: workload.replicas, replicasBefore, readyEndpoints: this.options.readiness.readyCount(key), nowMs: this.now() });
  }

  private tick(): void {
    const now = this.now();
    const leader = this.options.isLeader();
    this.publishReport(now);
    let statusWrites = 0;

    for (const [key, workload] of this.workloads) {
      this.wakeForHeld(key, workload, now);
      this.retryScaleUp(key, workload, now);
      this.feed(key, { type: 'tick', nowMs: now });
      // Only a leader scales down, and never while an autoscaler keeps
      // the workload above zero for reasons other than traffic.
      const mayScaleDown = leader && this.autoscalers.heldAboveZeroBy(workload.spec.namespace, workload.spec.target) === null;
      // A release in progress holds flows that count as no activity yet,
      // and a backend that takes long to listen must not be scaled away
      // while they wait for it.
      if (workload.releasing === 0) this.feed(key, { type: 'idle-check', lastActivityMs: this.lastActivity(key, workload, now), nowMs: now, leader: mayScaleDown });
      if (leader) {
        this.checkScaleDown(key, workload, now);
        if (statusWrites < STATUS_WRITES_PER_TICK && this.syncStatus(key, workload)) statusWrites++;
      }
    }
  }

  // A flow held behind a closed gate while no wake runs lost its wake
  // signal: the wake ring was full, or the signal was read before the
  // controller listened. The held flow wakes the workload now, so that it
  // is released or, after wakeTimeout, dropped and counted.
  private wakeForHeld(key: WorkloadKey, workload: Workload, now: number): void {
    const { phase, gateClosed } = workload.state;
    if (!gateClosed || (phase !== 'Cold' && phase !== 'ScalingDown')) return;
    const [held] = this.options.datapath.heldFlows(key);
    if (held === undefined) return;

    this.options.log.info({ workload: key }, 'a flow is held without a wake in progress, waking the workload');
    this.feed(key, flowOpener(held.record.flow, now));
  }

  // Tries a wake's failed scale-up again, with a backoff, while the wake
  // lasts: a wake that stopped at one API error would hold its flows until
  // wakeTimeout and then drop them.
  private retryScaleUp(key: WorkloadKey, workload: Workload, now: number): void {
    const retry = workload.scaleUpRetry;
    if (retry === null) return;
    if (workload.state.phase !== 'Waking') {
      workload.scaleUpRetry = null;
      return;
    }
    if (now < retry.atMs) return;

    // The next failure sets a later time; until then no other attempt starts.
    retry.atMs = Infinity;
    this.options.log.info({ workload: key, attempt: retry.attempts + 1 }, 'trying the scale-up of the wake again');
    void this.apply(key, workload, workload.state, { type: 'scale', replicas: workload.spec.wakeReplicas, mode: 'at-least' }, now);
  }

  // Leader: writes status.heldFlows, summed over the live nodes, and the
  // Ready condition of the phase, when either changed.
  // Returns whether it wrote.
  private syncStatus(key: WorkloadKey, workload: Workload): boolean {
    const heldFlows = this.options.datapath.heldFlows(key).length + (this.options.reports?.heldFlowsElsewhere(key) ?? 0);
    const ready = readyCondition(workload.state.phase);
    const written = `${heldFlows}|${ready.status}|${ready.reason}`;
    if (workload.writtenStatus === written) return false;
    workload.writtenStatus = written;

    const now = new Date();
    const generation = workload.object.metadata?.generation;
    const valid: Condition = { type: 'Valid', status: 'True', reason: 'Valid', message: 'the configuration is valid', observedGeneration: generation };
    let conditions = setCondition(statusOf(workload).conditions, valid, now);
    conditions = setCondition(conditions, { ...ready, observedGeneration: generation }, now);
    this.patchStatus(workload, { heldFlows, conditions }).catch((err: Error) => {
      // Written again on the next tick.
      workload.writtenStatus = null;
      this.options.metrics?.apiErrors.inc({ operation: 'write-status' });
      this.options.log.warn({ err, workload: key }, 'writing status failed');
    });
    return true;
  }

  // The latest activity anywhere in the cluster, on this process's
  // monotonic clock. Reports carry Unix time, converted by the offset
  // between the two clocks now.
  private lastActivity(key: WorkloadKey, workload: Workload, now: number): number {
    const candidates = [workload.lastActivityMs, this.options.activity.lastActivity(key), workload.state.warmSinceMs ?? undefined];
    // Reports are converted on arrival, and a time after now, which a
    // report cannot carry honestly, counts as now.
    const remote = this.options.reports?.lastActivity(key);
    if (remote !== undefined) candidates.push(Math.min(now, remote));
    workload.lastActivityMs = Math.max(...candidates.filter((c): c is number => c !== undefined));
    return workload.lastActivityMs;
  }

  // Publishes this node's report every report interval, and early when the
  // flows it holds change.
  private publishReport(now: number): void {
    const reports = this.options.reports;
    if (!reports) return;
    const heldFlows = new Map<WorkloadKey, number>();
    for (const key of this.workloads.keys()) {
      const count = this.options.datapath.heldFlows(key).length;
      if (count > 0) heldFlows.set(key, count);
    }
    const held = JSON.stringify([...heldFlows]);
    const sinceLast = now - this.lastReportMs;
    const due = sinceLast >= (this.options.reportIntervalMs ?? 10_000) || (held !== this.lastReportedHeld && sinceLast >= HELD_REPORT_MIN_INTERVAL_MS);
    if (!due) return;
    this.lastReportMs = now;
    this.lastReportedHeld = held;

    const activity = new Map<WorkloadKey, number>();
    const gatesClosed = new Map<WorkloadKey, string>();
    for (const [key, workload] of this.workloads) {
      const local = this.options.activity.lastActivity(key);
      // Flows held here, such as those of a release that waits for its
      // backend to listen, are clients too, which the datapath counts as
      // warm traffic only once they go out.
      if (heldFlows.has(key) || workload.releasing > 0) activity.set(key, Date.now());
      else if (local !== undefined) activity.set(key, Date.now() - (now - local));
      if (workload.state.phase === 'ScalingDown' && workload.state.gateClosed && workload.appliedScaleDownId) {
        gatesClosed.set(key, workload.appliedScaleDownId);
      }
    }
    reports.publish({ activity, gatesClosed, heldFlows }).catch((err: Error) => {
      this.options.metrics?.apiErrors.inc({ operation: 'publish-report' });
      this.options.log.warn({ err }, 'publishing the node report failed');
    });
  }

  // Leader: scales to zero once every live node keeps new flows, or calls
  // the scale-down off when one does not close its gate in time.
  private checkScaleDown(key: WorkloadKey, workload: Workload, now: number): void {
    // A scale-down that a previous leader announced, or whose write of zero
    // failed, is finished or called off like one of this leader's own.
    if (!workload.pendingScaleDown && !workload.scalingToZero && workload.state.phase === 'ScalingDown' && workload.appliedScaleDownId) {
      this.options.log.info({ workload: key, scaleDownId: workload.appliedScaleDownId }, 'taking over a scale-down in progress');
      workload.pendingScaleDown = { id: workload.appliedScaleDownId, startedMs: now };
    }
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
      // Counts as activity, so that the next announcement waits another
      // idle timeout instead of closing every gate again at once.
      workload.lastActivityMs = now;
      void this.options.events.record(this.referenceOf(workload), 'Warning', 'ScaleDownAborted', `nodes did not close their gate in time: ${open.join(', ')}`);
      void this.patchStatus(workload, { phase: 'Warm', scaleDownId: null }).catch((err: Error) => this.options.log.warn({ err, workload: key }, 'writing status failed'));
      this.feed(key, { type: 'scale-down-aborted', nowMs: now });
    }
  }

  private referenceOf(workload: Workload) {
    return referenceTo(workload.spec.source, workload.object);
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
    const { datapath, log, metrics } = this.options;

    try {
      switch (action.type) {
        case 'close-gate':
          datapath.closeGate(key);
          return;
        case 'release':
          await this.release(key, workload, before, eventMs);
          return;
        case 'scale':
          if (action.mode === 'at-least') await this.scaleUp(key, workload, action.replicas);
          else if (this.options.isLeader()) await this.scaleToZero(key, workload, action.replicas);
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
          // A wake that a restarted agent resumed may have nothing held.
          const dropped = datapath.expireHeld(key, this.now());
          if (dropped.length === 0) return;
          metrics?.heldDropped.inc({ workload: key, reason: 'wake-timeout' }, dropped.length);
          log.warn({ workload: key, dropped: dropped.length, reason: action.reason }, 'dropped held flows');
          return;
        }
        case 'event':
          await this.recordEvent(workload, action.warning ? 'Warning' : 'Normal', action.reason, action.message);
          return;
      }
    } catch (err) {
      metrics?.apiErrors.inc({ operation: action.type });
      log.error({ err, workload: key, action: action.type }, 'action failed');
    }
  }

  // Scales a waking workload up. A failure is retried from the tick while
  // the phase is Waking (retryScaleUp), and then rethrown for apply() to
  // log and count.
  private async scaleUp(key: WorkloadKey, workload: Workload, replicas: number): Promise<void> {
    const { scaler, metrics, log } = this.options;

    // A wake ends any scale-down in progress, for every node. A failed
    // status write must not stop the scale-up.
    if (statusOf(workload).phase === 'ScalingDown') {
      await this.patchStatus(workload, { phase: 'Waking', scaleDownId: null }).catch((err: Error) => {
        metrics?.apiErrors.inc({ operation: 'write-status' });
        log.warn({ err, workload: key }, 'writing status failed, scaling up anyway');
      });
    }

    const target = this.targets.get(targetKey(workload.spec.namespace, workload.spec.target.kind, workload.spec.target.name));
    const known = target?.metadata?.resourceVersion ? { replicas: target.spec?.replicas ?? 0, resourceVersion: target.metadata.resourceVersion } : undefined;
    let changed: boolean;
    try {
      changed = await scaler.scaleUp(workload.spec.namespace, workload.spec.target, replicas, known);
    } catch (err) {
      const attempts = (workload.scaleUpRetry?.attempts ?? 0) + 1;
      const delayMs = Math.min(SCALE_UP_RETRY_MAX_MS, SCALE_UP_RETRY_FIRST_MS * 2 ** (attempts - 1));
      workload.scaleUpRetry = { atMs: this.now() + delayMs, attempts };
      log.warn({ workload: key, attempts, retryInMs: delayMs }, 'the scale-up of a wake failed, trying again while the wake lasts');
      throw err;
    }
    workload.scaleUpRetry = null;

    // A polled target reports the new count before its pods are Ready, so
    // the Warm phase never meets the old count of 0.
    this.scaleTargets.refresh(workload.spec.namespace, workload.spec.target);
    if (changed) {
      metrics?.wakes.inc({ workload: key });
      await this.patchStatus(workload, { phase: 'Waking', lastWakeTime: new Date().toISOString() });
    }
  }

  // Leader: writes zero once every node closed its gate, unless a wake
  // ended the scale-down meanwhile. A failed write leaves the phase
  // ScalingDown, which checkScaleDown takes over again on the next tick.
  private async scaleToZero(key: WorkloadKey, workload: Workload, replicas: number): Promise<void> {
    const { scaler, metrics, log } = this.options;
    if (statusOf(workload).phase !== 'ScalingDown') {
      log.info({ workload: key, status: statusOf(workload).phase }, 'a wake ended the scale-down before the write of zero, leaving the replicas');
      return;
    }

    workload.scalingToZero = true;
    try {
      await scaler.scaleTo(workload.spec.namespace, workload.spec.target, replicas);
    } finally {
      workload.scalingToZero = false;
    }
    this.scaleTargets.refresh(workload.spec.namespace, workload.spec.target);
    metrics?.scaleDowns.inc({ workload: key });

    // Once for all nodes.
    void this.recordEvent(workload, 'Normal', 'ScaledToZero', 'scaled to zero after the idle timeout');
    await this.patchStatus(workload, { phase: 'Cold', scaleDownId: null });
  }

  // Records an Event on the ScaleToZero and on its target, where `kubectl
  // describe deployment` shows why the replica count changed.
  private async recordEvent(workload: Workload, type: 'Normal' | 'Warning', reason: string, message: string): Promise<void> {
    const target = { ...workload.spec.target, namespace: workload.spec.namespace };
    await Promise.all([this.options.events.record(this.referenceOf(workload), type, reason, message), this.options.events.record(target, type, reason, message)]);
  }

  // Counts the held flows that a release did not send on, and logs the
  // failures with the first error, which usually explains them all.
  private countUnsent(key: WorkloadKey, outcome: ReleaseOutcome): void {
    const { metrics, log } = this.options;
    if (outcome.failed.length > 0) {
      metrics?.heldDropped.inc({ workload: key, reason: 'reinject-failed' }, outcome.failed.length);
      log.warn({ workload: key, failed: outcome.failed.length, error: outcome.failed[0]!.error }, 're-injecting held flows failed; their clients retransmit');
    }
    const discarded = outcome.discarded?.length ?? 0;
    if (discarded > 0) metrics?.heldDropped.inc({ workload: key, reason: 'drop-mode' }, discarded);
  }

  // Opens the gate and re-injects the held flows, once the backends that
  // they go to listen and this node's load balancer has programmed them.
  // eventMs is when the event that caused the release was observed.
  private async release(key: WorkloadKey, workload: Workload, before: PhaseState, eventMs: number): Promise<void> {
    const { datapath, log, metrics } = this.options;
    workload.releasing++;
    let outcome;
    const waitStartedMs = this.now();
    let backendReadyMs = waitStartedMs;
    // A workload that was forgotten meanwhile is another object in the map.
    const cancelled = () => workload.state.gateClosed || this.stopped || this.workloads.get(key) !== workload;
    // The backends must listen before anything goes out, so flows
    // to frontends that the load balancer programmed meanwhile wait
    // for the end of the first round of probes.
    const rounds = this.listenRounds(key, workload, before, cancelled);
    const wait: ReleaseWait = { rounds, loadBalancer: false };
    workload.releaseWaits.add(wait);
    let listened = false;
    let programmedAll = false;
    const deferred: Frontend[] = [];
    // Flows to frontends that the load balancer programmed first go
    // out before the rest, with the gate still closed: a dual-stack
    // Service gets one EndpointSlice and one sync per IP family.
    const early: Promise<{ released: number; failed: number }>[] = [];
    const releaseEarly = (frontends: Frontend[]) => {
      if (!datapath.releaseEarly || cancelled()) return;
      if (!listened) deferred.push(...frontends);
      // Endpoints that turned Ready since the last round are probed first.
      else early.push(this.runListenRounds(key, rounds).then(() => (cancelled() ? { released: 0, failed: 0 } : this.releaseEarly(key, frontends))));
    };
    // When the probes ended, or eventMs when nothing was probed.
    let listenedMs = eventMs;
    const listening = this.runListenRounds(key, rounds).finally(() => {
      listened = true;
      if (rounds && rounds.probed > 0) listenedMs = this.now();
      if (deferred.length > 0 && !programmedAll) releaseEarly(deferred.splice(0));
    });
    try {
      wait.loadBalancer = this.options.backendCheck !== undefined;
      await Promise.all([
        listening,
        this.waitForBackend(key, workload, releaseEarly).finally(() => {
          programmedAll = true;
          wait.loadBalancer = false;
        }),
      ]);
      const probedBefore = rounds?.probed ?? 0;
      await this.runListenRounds(key, rounds);
      if (rounds && rounds.probed > probedBefore) listenedMs = this.now();
      if (rounds && rounds.probed > 0 && !cancelled()) {
        metrics?.listenWait.observe({ workload: key }, (listenedMs - waitStartedMs) / 1000);
        this.reportListening(key, workload, rounds.outcome, listenedMs - waitStartedMs);
      }
      backendReadyMs = this.now();
      // The workload went back to zero while the release waited: the
      // gate stays closed, and its held flows wake it again.
      if (!cancelled()) outcome = await datapath.release(key);
    } finally {
      workload.releasing--;
      workload.releaseWaits.delete(wait);
    }
    if (outcome === undefined) {
      log.info({ workload: key, phase: workload.state.phase }, 'the gate closed again while the release waited for the backend, so the held flows stay held');
      return;
    }
    this.countUnsent(key, outcome);
    const released = (await Promise.all(early)).reduce((sum, part) => ({ released: sum.released + part.released, failed: sum.failed + part.failed }), { released: 0, failed: 0 });
    const now = this.now();
    const coldStartMs = before.wakeStartedMs === null ? null : now - before.wakeStartedMs;
    // The wait for the backends to listen is the workload's own start,
    // as a readiness probe's would be, so the overhead starts after it.
    metrics?.releaseOverhead.observe({ workload: key }, (now - listenedMs) / 1000);
    // backendWaitMs is the node's load balancer catching up (and the
    // backends starting to listen), and releaseMs the gate opening
    // and the re-injection.
    log.info(
      {
        workload: key,
        released: outcome.released.length + released.released,
        releasedEarly: released.released,
        failed: outcome.failed.length + released.failed,
        coldStartMs,
        backendWaitMs: backendReadyMs - waitStartedMs,
        releaseMs: now - backendReadyMs,
      },
      'released held flows',
    );
    if (coldStartMs !== null) {
      metrics?.coldStart.observe({ workload: key }, coldStartMs / 1000);
      await this.patchStatus(workload, { phase: 'Warm', lastColdStartSeconds: Math.round(coldStartMs) / 1000 });
    }
  }

  // Re-injects, with the gate still closed, the held flows to frontends
  // that the load balancer programmed before the others.
  private releaseEarly(key: WorkloadKey, frontends: Frontend[]): Promise<{ released: number; failed: number }> {
    const { datapath, log } = this.options;
    const startedMs = this.now();
    return datapath.releaseEarly!(key, frontends).then(
      (result) => {
        this.countUnsent(key, result);
        const counts = { released: result.released.length, failed: result.failed.length };
        if (counts.released + counts.failed > 0) {
          log.info({ workload: key, ...counts, frontends: frontends.map(frontendToString), releaseMs: this.now() - startedMs }, 'released held flows early');
        }
        return counts;
      },
      (err: Error) => {
        log.error({ err, workload: key }, 're-injecting held flows early failed, the clients retransmit');
        return { released: 0, failed: 0 };
      },
    );
  }

  // The probes of one release, or undefined without a listen check. They
  // may take what is left of wakeTimeout since the wake began (the whole
  // wakeTimeout for a release outside a wake).
  private listenRounds(key: WorkloadKey, workload: Workload, before: PhaseState, cancelled: () => boolean): ListenRounds | undefined {
    const check = this.options.listenCheck;
    if (!check || !workload.spec.checkListening) return undefined;

    const deadlineMs = (before.wakeStartedMs ?? this.now()) + workload.spec.wakeTimeoutMs;
    const targets = () => {
      const namespace = workload.spec.namespace;
      const services = workload.services.flatMap((name) => {
        const service = this.services.get(`${namespace}/${name}`) as V1Service | undefined;
        return service ? [{ service, backends: this.options.readiness.readyBackends(`${namespace}/${name}`) }] : [];
      });
      return listenTargetsOf(
        this.options.datapath.heldFlows(key).map((held) => held.record.flow),
        services,
        this.options.nodeAddresses,
      );
    };
    return new ListenRounds(check, targets, () => deadlineMs - this.now(), cancelled);
  }

  // Runs the rounds that have new targets. A failure is logged, and the
  // release goes on as if the backends listened.
  private async runListenRounds(key: WorkloadKey, rounds: ListenRounds | undefined): Promise<void> {
    try {
      await rounds?.run();
    } catch (err) {
      this.options.log.error({ err, workload: key }, 'checking whether the backend listens failed, releasing on its Ready condition');
    }
  }

  // Logs what the probes of a release found, and records a Warning for
  // endpoints that still did not listen: their clients get a refusal, or
  // lose their datagram, at once rather than after their wait.
  private reportListening(key: WorkloadKey, workload: Workload, outcome: ListenOutcome, waitedMs: number): void {
    const { log } = this.options;
    if (outcome.unknown.length > 0) {
      const first = outcome.unknown[0]!;
      log.info({ workload: key, endpoints: outcome.unknown.map(({ target }) => listenTargetToString(target)), error: first.error }, 'could not tell whether the backend listens, releasing on its Ready condition');
    }
    if (outcome.refusing.length > 0) {
      const endpoints = outcome.refusing.map(listenTargetToString);
      log.warn({ workload: key, endpoints, waitedMs }, 'the backend is Ready but does not listen, releasing anyway');
      this.options.metrics?.backendRefused.inc({ workload: key });
      const tcp = outcome.refusing.filter((target) => target.protocol === 'tcp').map(listenTargetToString);
      const udp = outcome.refusing.filter((target) => target.protocol === 'udp').map(listenTargetToString);
      const parts = [...(tcp.length > 0 ? [`${tcp.join(', ')} refused connections`] : []), ...(udp.length > 0 ? [`${udp.join(', ')} had no socket bound`] : [])];
      // A UDP socket that the node cannot see looks unbound for the whole
      // wait.
      const sandbox = udp.length > 0 ? `. A UDP server whose socket the node cannot see (bound with SO_BINDTODEVICE, or in a sandboxed runtime) cannot be checked: set spec.checkListening: false on the ScaleToZero` : '';
      void this.recordEvent(
        workload,
        'Warning',
        'BackendNotListening',
        `${parts.join(' and ')} after turning Ready, and the held flows went out anyway. Give the pods a readiness probe on the port they serve, or check the Service's targetPort${sandbox}`,
      );
      return;
    }
    if (outcome.listening.length > 0 && waitedMs >= 1) {
      log.info({ workload: key, endpoints: outcome.listening.map(listenTargetToString), waitedMs }, 'the backend listens');
    }
  }

  // Waits until this node's load balancer has a backend for every
  // frontend, or the check's timeout passed.
  private async waitForBackend(key: WorkloadKey, workload: Workload, onProgrammed: (frontends: Frontend[]) => void): Promise<void> {
    const check = this.options.backendCheck;
    if (!check) return;
    const timeoutMs = this.options.backendCheckTimeoutMs ?? 10_000;
    if (await check.waitProgrammed(workload.frontends, timeoutMs, onProgrammed)) return;
    this.options.log.warn({ workload: key, timeoutMs }, 'the node load balancer has no backend yet, releasing anyway');
  }

  // Forgets the workload, and records a Warning Event and a Valid=False
  // condition, once per message.
  private reportInvalid(key: WorkloadKey, object: KubernetesObject, source: WorkloadSpec['source'], problems: string[]): void {
    this.forget(key);
    if (!this.options.isLeader()) return;

    const message = problems.join('; ');
    const conditions = readStatus(source, object).conditions ?? [];
    if (conditions.some((c) => c.type === 'Valid' && c.message === message)) return;

    const now = new Date();
    const invalid: Condition = { type: 'Valid', status: 'False', reason: 'InvalidSpec', message, observedGeneration: object.metadata?.generation };
    void this.options.events.record(referenceTo(source, object), 'Warning', 'InvalidConfiguration', message);
    this.status.patch(source, object, { conditions: setCondition(conditions, invalid, now) }).catch((err: Error) => {
      this.options.log.warn({ err, workload: key }, 'writing the invalid condition failed');
    });
  }

  private patchStatus(workload: Workload, status: Record<string, unknown>): Promise<void> {
    return this.status.patch(workload.spec.source, workload.object, status);
  }

  private forget(key: WorkloadKey): void {
    if (!this.workloads.has(key)) return;
    // Removed from the datapath first, while the workload still names its
    // Services for the report of the flows it dropped.
    const dropped = this.options.datapath.removeWorkload(key);
    this.workloads.delete(key);
    this.options.readiness.untrack(key);
    this.options.metrics?.untrackWorkload(key);

    if (dropped.length === 0) return;
    this.options.metrics?.heldDropped.inc({ workload: key, reason: 'workload-removed' }, dropped.length);
    this.options.log.warn({ workload: key, dropped: dropped.length }, 'dropped held flows of a workload that no longer opts in; the clients retransmit and reach the workload as it is');
  }
}
