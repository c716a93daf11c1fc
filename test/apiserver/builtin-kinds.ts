// The built-in resources this server serves, each validated against the
// upstream schema that the kubernetes-models package compiles.

import { CustomResourceDefinition } from 'kubernetes-models/apiextensions.k8s.io/v1/CustomResourceDefinition';
import { DaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import { Lease } from 'kubernetes-models/coordination.k8s.io/v1/Lease';
import { EndpointSlice } from 'kubernetes-models/discovery.k8s.io/v1/EndpointSlice';
import { Event as EventsV1Event } from 'kubernetes-models/events.k8s.io/v1/Event';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Event as CoreEvent } from 'kubernetes-models/v1/Event';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { Node } from 'kubernetes-models/v1/Node';
import { Pod } from 'kubernetes-models/v1/Pod';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { ClusterRole } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole';
import { ClusterRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRoleBinding';
import { Role } from 'kubernetes-models/rbac.authorization.k8s.io/v1/Role';
import { RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding';

import {
  defaultDaemonSet,
  defaultDeployment,
  defaultLease,
  defaultNamespace,
  defaultNode,
  defaultPod,
  defaultSecret,
  defaultService,
  defaultStatefulSet,
  initialPodStatus,
} from './defaults.js';
import { type FieldExtractors, pathFields } from './field-selector.js';
import { crdCauses, defaultCrd, initialCrdStatus, workloadCauses, workloadSelector } from './kind-rules.js';
import { nodeCauses, nodeUpdateCauses } from './node-rules.js';
import { getPath, type KubeObject } from './objects.js';
import type { DefaultingContext, ResourceType, ScaleSubresource } from './resource-type.js';
import type { StatusCause } from './status.js';
import { metadataCauses, type ModelClass, type NameRule, schemaCauses } from './validation.js';

interface BuiltinSpec {
  group: string;
  version: string;
  kind: string;
  plural: string;
  model: ModelClass;
  namespaced?: boolean;
  shortNames?: string[];
  categories?: string[];
  statusSubresource?: boolean;
  createKeepsStatus?: boolean;
  scale?: ScaleSubresource;
  tracksGeneration?: boolean;
  returnDeletedObject?: boolean;
  nameRule?: NameRule;
  fields?: FieldExtractors;
  immutableFields?: string[];
  initialStatus?(object: KubeObject): unknown;
  applyDefaults?(object: KubeObject, context: DefaultingContext, old?: KubeObject): void;
  // Kind rules that the schema cannot express.
  rules?(object: KubeObject): StatusCause[];
  updateRules?(old: KubeObject, next: KubeObject): StatusCause[];
}

function builtin(spec: BuiltinSpec): ResourceType {
  const nameRule = spec.nameRule ?? 'dns1123Subdomain';
  return {
    group: spec.group,
    version: spec.version,
    kind: spec.kind,
    listKind: `${spec.kind}List`,
    plural: spec.plural,
    singular: spec.kind.toLowerCase(),
    shortNames: spec.shortNames ?? [],
    categories: spec.categories ?? [],
    namespaced: spec.namespaced ?? true,
    storageKey: `${spec.group}/${spec.plural}`,
    custom: false,
    statusSubresource: spec.statusSubresource ?? false,
    ...(spec.createKeepsStatus ? { createKeepsStatus: true } : {}),
    ...(spec.scale ? { scale: spec.scale } : {}),
    tracksGeneration: spec.tracksGeneration ?? false,
    returnDeletedObject: spec.returnDeletedObject ?? false,
    allowUnconditionalUpdate: true,
    nameRule,
    fields: spec.fields ?? {},
    immutableFields: spec.immutableFields ?? [],
    ...(spec.initialStatus ? { initialStatus: spec.initialStatus } : {}),
    ...(spec.applyDefaults ? { applyDefaults: spec.applyDefaults } : {}),
    validate: (object) => [
      ...schemaCauses(spec.model, object, spec.kind, spec.version),
      ...metadataCauses(object, nameRule),
      ...(spec.rules?.(object) ?? []),
    ],
    ...(spec.updateRules ? { validateUpdate: spec.updateRules } : {}),
  };
}

const WORKLOAD_SCALE: ScaleSubresource = {
  specReplicasPath: '.spec.replicas',
  statusReplicasPath: '.status.replicas',
  selector: workloadSelector,
};

export function builtinKinds(): ResourceType[] {
  return [
    builtin({
      group: '',
      version: 'v1',
      kind: 'Namespace',
      plural: 'namespaces',
      model: Namespace,
      namespaced: false,
      shortNames: ['ns'],
      statusSubresource: true,
      nameRule: 'dns1123Label',
      fields: pathFields('status.phase'),
      initialStatus: () => ({ phase: 'Active' }),
      applyDefaults: defaultNamespace,
    }),
    builtin({
      group: '',
      version: 'v1',
      kind: 'Node',
      plural: 'nodes',
      model: Node,
      namespaced: false,
      shortNames: ['no'],
      statusSubresource: true,
      createKeepsStatus: true,
      // Go prints the bool, so a Node without the field matches "false".
      fields: { 'spec.unschedulable': (object) => String(getPath(object, 'spec.unschedulable') === true) },
      applyDefaults: defaultNode,
      rules: nodeCauses,
      updateRules: nodeUpdateCauses,
    }),
    builtin({
      group: '',
      version: 'v1',
      kind: 'Service',
      plural: 'services',
      model: Service,
      shortNames: ['svc'],
      categories: ['all'],
      statusSubresource: true,
      returnDeletedObject: true,
      nameRule: 'dns1035Label',
      immutableFields: ['spec.clusterIP'],
      applyDefaults: defaultService,
    }),
    builtin({
      group: '',
      version: 'v1',
      kind: 'Pod',
      plural: 'pods',
      model: Pod,
      shortNames: ['po'],
      categories: ['all'],
      statusSubresource: true,
      returnDeletedObject: true,
      fields: pathFields('spec.nodeName', 'spec.restartPolicy', 'spec.schedulerName', 'spec.serviceAccountName', 'status.phase', 'status.podIP'),
      initialStatus: initialPodStatus,
      applyDefaults: defaultPod,
    }),
    builtin({
      group: '',
      version: 'v1',
      kind: 'Event',
      plural: 'events',
      model: CoreEvent,
      shortNames: ['ev'],
      fields: pathFields(
        'involvedObject.kind',
        'involvedObject.namespace',
        'involvedObject.name',
        'involvedObject.uid',
        'involvedObject.apiVersion',
        'involvedObject.resourceVersion',
        'involvedObject.fieldPath',
        'reason',
        'reportingComponent',
        'source',
        'type',
      ),
    }),
    builtin({ group: '', version: 'v1', kind: 'ConfigMap', plural: 'configmaps', model: ConfigMap, shortNames: ['cm'] }),
    // The kinds of the agent's Helm chart and of Helm's release records
    // (Secrets). RBAC objects are stored, not enforced.
    // NOTE: kube-apiserver accepts any path segment as an RBAC object's
    // name, "system:" prefixes included; this server applies the DNS
    // subdomain rule of the other kinds.
    builtin({ group: '', version: 'v1', kind: 'Secret', plural: 'secrets', model: Secret, applyDefaults: defaultSecret }),
    builtin({ group: '', version: 'v1', kind: 'ServiceAccount', plural: 'serviceaccounts', model: ServiceAccount, shortNames: ['sa'] }),
    builtin({ group: 'rbac.authorization.k8s.io', version: 'v1', kind: 'ClusterRole', plural: 'clusterroles', model: ClusterRole, namespaced: false }),
    builtin({ group: 'rbac.authorization.k8s.io', version: 'v1', kind: 'ClusterRoleBinding', plural: 'clusterrolebindings', model: ClusterRoleBinding, namespaced: false }),
    builtin({ group: 'rbac.authorization.k8s.io', version: 'v1', kind: 'Role', plural: 'roles', model: Role }),
    builtin({ group: 'rbac.authorization.k8s.io', version: 'v1', kind: 'RoleBinding', plural: 'rolebindings', model: RoleBinding }),
    builtin({
      group: 'apps',
      version: 'v1',
      kind: 'DaemonSet',
      plural: 'daemonsets',
      model: DaemonSet,
      shortNames: ['ds'],
      categories: ['all'],
      statusSubresource: true,
      tracksGeneration: true,
      immutableFields: ['spec.selector'],
      // The fields that DaemonSetStatus does not omit when empty.
      initialStatus: () => ({ currentNumberScheduled: 0, numberMisscheduled: 0, desiredNumberScheduled: 0, numberReady: 0 }),
      applyDefaults: defaultDaemonSet,
      rules: workloadCauses,
    }),
    builtin({
      group: 'discovery.k8s.io',
      version: 'v1',
      kind: 'EndpointSlice',
      plural: 'endpointslices',
      model: EndpointSlice,
      tracksGeneration: true,
      immutableFields: ['addressType'],
    }),
    builtin({
      group: 'apps',
      version: 'v1',
      kind: 'Deployment',
      plural: 'deployments',
      model: Deployment,
      shortNames: ['deploy'],
      categories: ['all'],
      statusSubresource: true,
      scale: WORKLOAD_SCALE,
      tracksGeneration: true,
      immutableFields: ['spec.selector'],
      applyDefaults: defaultDeployment,
      rules: workloadCauses,
    }),
    builtin({
      group: 'apps',
      version: 'v1',
      kind: 'StatefulSet',
      plural: 'statefulsets',
      model: StatefulSet,
      shortNames: ['sts'],
      categories: ['all'],
      statusSubresource: true,
      scale: WORKLOAD_SCALE,
      tracksGeneration: true,
      immutableFields: ['spec.selector', 'spec.serviceName', 'spec.volumeClaimTemplates', 'spec.podManagementPolicy'],
      initialStatus: () => ({ replicas: 0, availableReplicas: 0 }),
      applyDefaults: defaultStatefulSet,
      rules: workloadCauses,
    }),
    builtin({
      group: 'autoscaling',
      version: 'v2',
      kind: 'HorizontalPodAutoscaler',
      plural: 'horizontalpodautoscalers',
      model: HorizontalPodAutoscaler,
      shortNames: ['hpa'],
      statusSubresource: true,
      tracksGeneration: true,
      // The schema requires desiredReplicas once status exists, and the
      // controller reports it before its first scaling decision.
      initialStatus: () => ({ currentReplicas: 0, desiredReplicas: 0 }),
    }),
    builtin({
      group: 'coordination.k8s.io',
      version: 'v1',
      kind: 'Lease',
      plural: 'leases',
      model: Lease,
      applyDefaults: defaultLease,
    }),
    // NOTE: kube-apiserver stores both Event APIs in one place and converts
    // between them. Here events.k8s.io/v1 Events have their own storage, so
    // a core/v1 list does not show them.
    builtin({
      group: 'events.k8s.io',
      version: 'v1',
      kind: 'Event',
      plural: 'events',
      model: EventsV1Event,
      shortNames: ['ev'],
    }),
    builtin({
      group: 'apiextensions.k8s.io',
      version: 'v1',
      kind: 'CustomResourceDefinition',
      plural: 'customresourcedefinitions',
      model: CustomResourceDefinition,
      namespaced: false,
      shortNames: ['crd', 'crds'],
      categories: ['api-extensions'],
      statusSubresource: true,
      tracksGeneration: true,
      initialStatus: initialCrdStatus,
      applyDefaults: defaultCrd,
      rules: crdCauses,
    }),
  ];
}

export const NAMESPACES_KEY = '/namespaces';
export const CRDS_KEY = 'apiextensions.k8s.io/customresourcedefinitions';
