// The agent's DaemonSet as the tests read it, so that tests which run the
// agent with its capabilities follow the manifest.

import { readFileSync } from 'node:fs';
import path from 'node:path';

import { parse } from 'yaml';

import { repoRoot } from '../../src/paths.js';

// Returns the capabilities that the DaemonSet adds to its agent container
// after dropping all, such as ["BPF", "NET_ADMIN", "PERFMON", "NET_RAW"].
// Throws if the container does not drop all first, because the list would
// then not be all the agent has.
export function daemonSetCapabilities(): string[] {
  const manifest = parse(readFileSync(path.join(repoRoot, 'deploy/kubernetes/daemonset.yaml'), 'utf8'));
  const agent = manifest.spec.template.spec.containers.find((container: { name: string }) => container.name === 'agent');
  const { capabilities } = agent.securityContext;
  if (JSON.stringify(capabilities.drop) !== '["ALL"]') throw new Error(`the DaemonSet's agent drops ${JSON.stringify(capabilities.drop)}, expected ["ALL"]`);
  return capabilities.add;
}

// The capabilities that the Helm chart grants in chained and signal
// modes: the DaemonSet's without NET_RAW, which only standalone mode's
// check of kube-proxy's iptables rules uses.
export function chainedModeCapabilities(): string[] {
  return daemonSetCapabilities().filter((name) => name !== 'NET_RAW');
}
