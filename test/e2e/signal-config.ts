// The configuration file of a signal-mode agent for the e2e tests: the
// Kubernetes API of a test cluster, and the sockets in workDir, where the
// test Hubble server listens on cilium-hubble.sock.

import { writeFileSync } from 'node:fs';
import path from 'node:path';

// Writes workDir/agent.yaml and returns its path. extra lists more
// top-level YAML lines.
export function writeSignalConfig(workDir: string, kubeconfigPath: string, extra: string[] = []): string {
  const configPath = path.join(workDir, 'agent.yaml');
  writeFileSync(
    configPath,
    [
      'nodeName: node-1',
      'mode: signal',
      `kubernetes: { kubeconfig: ${kubeconfigPath} }`,
      'metrics: { host: 127.0.0.1, port: 0 }',
      `api: { socket: ${workDir}/agent.sock }`,
      `hubble: { socket: ${workDir}/cilium-hubble.sock, observerSocket: ${workDir}/hubble.sock }`,
      ...extra,
      '',
    ].join('\n'),
  );
  return configPath;
}
