// The description of one served resource (a kind at one group/version) that
// routing, storage, discovery and the REST handlers share.

import type { FieldExtractors } from './field-selector.js';
import type { KubeObject } from './objects.js';
import type { IpFamily, ParsedIp } from './service-ip-allocator.js';
import type { GroupResource, StatusCause } from './status.js';
import type { NameRule } from './validation.js';

export interface ScaleSubresource {
  specReplicasPath: string;
  statusReplicasPath: string;
  // Returns the selector in string form for Scale status.selector, or
  // undefined when the object has none.
  selector(object: KubeObject): string | undefined;
}

// Server state that defaulting needs, such as the Service ClusterIP ranges.
export interface DefaultingContext {
  // Returns the next free Service ClusterIP of `family`.
  allocateServiceIp(family: IpFamily): string;
  // Returns why a Service may not take the requested `address`, or undefined
  // when it may. NOTE: optional so that contexts built outside
  // startApiServer, such as bench/agent.ts's preloader, still fit. Without
  // it every requested address is accepted.
  serviceIpRejection?(address: ParsedIp): string | undefined;
}

export interface ResourceType {
  group: string;
  version: string;
  kind: string;
  listKind: string;
  plural: string;
  singular: string;
  shortNames: string[];
  categories: string[];
  namespaced: boolean;
  // Objects of all versions of one group/plural share this storage key.
  storageKey: string;
  // Custom resources keep apiVersion and kind in list items and reject
  // strategic merge patches, as kube-apiserver does for them.
  custom: boolean;
  // With a status subresource, create (unless createKeepsStatus) and
  // main-resource updates keep the server's .status, and /status updates
  // change nothing else.
  statusSubresource: boolean;
  // Whether create keeps the request's .status despite a status
  // subresource, as kube-apiserver does for Nodes so that a kubelet
  // registers its node in one request.
  createKeepsStatus?: boolean;
  scale?: ScaleSubresource;
  // metadata.generation starts at 1 and increments whenever a field outside
  // metadata and status changes.
  tracksGeneration: boolean;
  // Whether DELETE responds with the deleted object (ReturnDeletedObject in
  // kube-apiserver's registry) rather than a Status with status Success.
  returnDeletedObject: boolean;
  // Whether a PUT without metadata.resourceVersion may overwrite the object.
  allowUnconditionalUpdate: boolean;
  nameRule: NameRule;
  // Field selectors beyond metadata.name and metadata.namespace.
  fields: FieldExtractors;
  // Dotted paths that an update must not change once set.
  immutableFields: string[];
  // The .status a new object starts with; {} when absent.
  initialStatus?(object: KubeObject): unknown;
  // Sets server-side defaults in place. `old` is the stored object on update.
  applyDefaults?(object: KubeObject, context: DefaultingContext, old?: KubeObject): void;
  // Returns the causes of a 422 for `object`, or throws 400 for a decoding error.
  validate(object: KubeObject): StatusCause[];
  // Returns the causes of a 422 that only an update can have, such as a
  // change to a field that may be set once.
  validateUpdate?(old: KubeObject, next: KubeObject): StatusCause[];
}

export function apiVersionOf(type: Pick<ResourceType, 'group' | 'version'>): string {
  return type.group ? `${type.group}/${type.version}` : type.version;
}

export function groupResourceOf(type: ResourceType): GroupResource {
  return { group: type.group, resource: type.plural };
}
