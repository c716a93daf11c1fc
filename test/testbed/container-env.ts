// A container's environment and argv as the kubelet builds them: env
// values, downward API fieldRefs, and $(VAR) references in command and args.

import type { V1Container, V1Pod } from '@kubernetes/client-node';

// The base environment of every container. A real container gets its
// image's environment. Here PATH must at least find the Debian binaries.
const BASE_ENV: Record<string, string> = {
  PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  HOME: '/root',
};

export interface PodFields {
  podIP: string;
  podIPs: string[];
}

// Returns the container's environment. fieldRef supports the fields that
// servers commonly read: metadata.name, metadata.namespace, metadata.uid,
// spec.nodeName, spec.serviceAccountName, status.podIP and status.podIPs.
// NOTE: configMapKeyRef, secretKeyRef, resourceFieldRef and envFrom are not
// supported and raise an error, so the pod fails to start visibly.
export function containerEnv(pod: V1Pod, container: V1Container, fields: PodFields): Record<string, string> {
  const env: Record<string, string> = { ...BASE_ENV, HOSTNAME: pod.metadata?.name ?? '' };
  if (container.envFrom?.length) throw new Error(`container ${container.name}: envFrom is not supported by the testbed kubelet`);

  for (const variable of container.env ?? []) {
    if (variable.valueFrom === undefined) {
      env[variable.name] = expandReferences(variable.value ?? '', env);
      continue;
    }
    const fieldPath = variable.valueFrom.fieldRef?.fieldPath;
    if (fieldPath === undefined) throw new Error(`container ${container.name}: env ${variable.name} uses a valueFrom source that the testbed kubelet does not support`);
    env[variable.name] = fieldValue(pod, fieldPath, fields);
  }
  return env;
}

function fieldValue(pod: V1Pod, fieldPath: string, fields: PodFields): string {
  switch (fieldPath) {
    case 'metadata.name':
      return pod.metadata?.name ?? '';
    case 'metadata.namespace':
      return pod.metadata?.namespace ?? '';
    case 'metadata.uid':
      return pod.metadata?.uid ?? '';
    case 'spec.nodeName':
      return pod.spec?.nodeName ?? '';
    case 'spec.serviceAccountName':
      return pod.spec?.serviceAccountName ?? 'default';
    case 'status.podIP':
      return fields.podIP;
    case 'status.podIPs':
      return fields.podIPs.join(',');
    default:
      throw new Error(`fieldRef ${JSON.stringify(fieldPath)} is not supported by the testbed kubelet`);
  }
}

// Returns the container's argv: command then args, with $(VAR) replaced by
// the variable's value. As in Kubernetes, $$ escapes a dollar sign and a
// reference to an unknown variable stays as written.
export function containerArgv(container: V1Container, env: Record<string, string>): string[] {
  const argv = [...(container.command ?? []), ...(container.args ?? [])];
  if (argv.length === 0) throw new Error(`container ${container.name} has no command: the testbed has no images, so command is required`);
  return argv.map((argument) => expandReferences(argument, env));
}

function expandReferences(text: string, env: Record<string, string>): string {
  return text.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (match, name: string | undefined) => {
    if (name === undefined) return '$';
    return env[name] ?? match;
  });
}
