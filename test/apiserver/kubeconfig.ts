// Kubeconfigs that point @kubernetes/client-node at a test API server.
//
// client-node 1.4 refuses a plain http:// server unless the cluster sets
// skipTLSVerify (KubeConfig.createAgent throws "HTTP protocol is not allowed
// when skipTLSVerify is not set or false"), so both forms set it.

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import type { KubeConfig } from '@kubernetes/client-node';

import { KeepAliveKubeConfig } from '../../src/agent/kube-config.js';

const NAME = 'zerohold-test';

export interface KubeConfigOptions {
  // Static bearer token sent with every request.
  token?: string;
  // Namespace of the context, for tools that read it.
  namespace?: string;
}

export function kubeConfigFor(serverUrl: string, options: KubeConfigOptions = {}): KubeConfig {
  const kubeConfig = new KeepAliveKubeConfig();
  kubeConfig.loadFromOptions({
    clusters: [{ name: NAME, server: serverUrl, skipTLSVerify: true }],
    users: [{ name: NAME, ...(options.token ? { token: options.token } : {}) }],
    contexts: [{ name: NAME, cluster: NAME, user: NAME, ...(options.namespace ? { namespace: options.namespace } : {}) }],
    currentContext: NAME,
  });
  return kubeConfig;
}

export interface KubeConfigFile {
  path: string;
  remove(): Promise<void>;
}

// Writes the kubeconfig to a new temporary directory, for code that takes a
// KUBECONFIG path. The caller removes it with remove().
export async function writeKubeConfigFile(serverUrl: string, options: KubeConfigOptions = {}): Promise<KubeConfigFile> {
  const directory = await mkdtemp(join(tmpdir(), 'zerohold-kubeconfig-'));
  const path = join(directory, 'config');
  // exportConfig() writes JSON, which is also valid YAML.
  await writeFile(path, kubeConfigFor(serverUrl, options).exportConfig(), { mode: 0o600 });
  return { path, remove: () => rm(directory, { recursive: true, force: true }) };
}
