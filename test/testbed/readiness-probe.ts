// Readiness probes of a simulated container: tcpSocket, httpGet and exec,
// with the thresholds of the Kubernetes Probe type.
//
// Deviations from the kubelet, all for the testbed:
// - probeIntervalMs, when set, replaces periodSeconds, so a cold start is
//   not stretched by the 10 s default period (or a 1 s one) between the
//   process binding its port and the pod turning Ready.
// - A tcpSocket probe connects from the node's network namespace to the
//   pod IP, as the kubelet's probe workers do from the host, through the
//   node's long-lived TcpProber. httpGet and exec probes spawn a process
//   per attempt inside the pod's namespace (nsenter), because the kubelet
//   runs in the root namespace here, which has no route to the pods.
//   httpGet still connects to the pod IP, so its results differ only for a
//   server that filters by source address.

import { execFile } from 'node:child_process';

import type { V1Container, V1Probe } from '@kubernetes/client-node';

import type { TcpProber } from './tcp-prober.js';

// Kubernetes Probe defaults.
const DEFAULT_PERIOD_SECONDS = 10;
const DEFAULT_TIMEOUT_SECONDS = 1;
const DEFAULT_FAILURE_THRESHOLD = 3;
const DEFAULT_SUCCESS_THRESHOLD = 1;

export interface ProbeTarget {
  netns: string;
  podIP: string;
  container: V1Container;
  // The container's environment and user, which exec probes run with.
  env: Record<string, string>;
  runAsUser?: number;
  runAsGroup?: number;
}

// Runs one container's readiness probe and calls onChange with each change
// of the container's readiness. Starts not ready.
export class ReadinessProbe {
  ready = false;
  private successes = 0;
  private failures = 0;
  private timer: NodeJS.Timeout | undefined;
  // The id of the running tcpSocket probe in the node's prober.
  private tcpProbeId: number | undefined;
  private stopped = true;

  constructor(
    private readonly probe: V1Probe,
    private readonly target: ProbeTarget,
    private readonly probeIntervalMs: number | undefined,
    // The node's prober, which runs tcpSocket probes.
    private readonly prober: TcpProber,
    private readonly onChange: (ready: boolean) => void,
  ) {}

  // Starts probing a new container run from scratch: results of earlier
  // runs do not count towards the thresholds.
  start(): void {
    this.stopped = false;
    this.successes = 0;
    this.failures = 0;
    const initialDelayMs = (this.probe.initialDelaySeconds ?? 0) * 1000;

    if (this.probe.tcpSocket) this.startTcpProbe(initialDelayMs);
    else this.schedule(initialDelayMs);
  }

  // Stops probing. No result counts after this call.
  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.tcpProbeId !== undefined) this.prober.remove(this.tcpProbeId);
    this.tcpProbeId = undefined;
  }

  private get periodMs(): number {
    return this.probeIntervalMs ?? (this.probe.periodSeconds ?? DEFAULT_PERIOD_SECONDS) * 1000;
  }

  private startTcpProbe(initialDelayMs: number): void {
    const { tcpSocket } = this.probe;
    let port: number;
    try {
      port = resolvePort(tcpSocket!.port, this.target.container);
    } catch {
      // A port name that the container does not declare fails every
      // attempt, so the container stays not ready.
      return;
    }

    const spec = {
      host: tcpSocket!.host || this.target.podIP,
      port,
      periodMs: this.periodMs,
      timeoutMs: (this.probe.timeoutSeconds ?? DEFAULT_TIMEOUT_SECONDS) * 1000,
      initialDelayMs,
      repeatLimit: Math.max(this.probe.successThreshold ?? DEFAULT_SUCCESS_THRESHOLD, this.probe.failureThreshold ?? DEFAULT_FAILURE_THRESHOLD),
    };
    this.tcpProbeId = this.prober.add(spec, (succeeded) => this.record(succeeded));
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.runOnce(), delayMs);
  }

  private async runOnce(): Promise<void> {
    const succeeded = await runProbe(this.probe, this.target).catch(() => false);
    if (this.stopped) return;
    this.record(succeeded);
    this.schedule(this.periodMs);
  }

  // Applies one result to the thresholds, as the kubelet does.
  private record(succeeded: boolean): void {
    if (succeeded) {
      this.failures = 0;
      this.successes++;
      if (!this.ready && this.successes >= (this.probe.successThreshold ?? DEFAULT_SUCCESS_THRESHOLD)) this.setReady(true);
    } else {
      this.successes = 0;
      this.failures++;
      if (this.ready && this.failures >= (this.probe.failureThreshold ?? DEFAULT_FAILURE_THRESHOLD)) this.setReady(false);
    }
  }

  private setReady(ready: boolean): void {
    this.ready = ready;
    this.onChange(ready);
  }
}

// Runs an httpGet or exec probe once and returns whether it succeeded.
export async function runProbe(probe: V1Probe, target: ProbeTarget): Promise<boolean> {
  const timeoutMs = (probe.timeoutSeconds ?? DEFAULT_TIMEOUT_SECONDS) * 1000;
  const nsenter = [`--net=/run/netns/${target.netns}`];

  if (probe.tcpSocket) throw new Error("tcpSocket probes run in the node's TcpProber, not through runProbe()");

  if (probe.httpGet) {
    const { httpGet } = probe;
    const host = httpGet.host || target.podIP;
    const port = resolvePort(httpGet.port, target.container);
    const scheme = (httpGet.scheme ?? 'HTTP').toLowerCase();
    const url = `${scheme}://${host.includes(':') ? `[${host}]` : host}:${port}${httpGet.path ?? '/'}`;
    const headers = (httpGet.httpHeaders ?? []).flatMap((header) => ['-H', `${header.name}: ${header.value}`]);
    // The kubelet counts 200..399 as success and does not verify HTTPS certificates.
    const args = [...nsenter, 'curl', '-s', '-k', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', String(timeoutMs / 1000), ...headers, url];
    const output = await outputOf('nsenter', args, {}, timeoutMs + 1000);
    const status = Number(output);
    return status >= 200 && status < 400;
  }

  if (probe.exec?.command?.length) {
    const user = [];
    if (target.runAsGroup !== undefined) user.push(`--setgid=${target.runAsGroup}`);
    if (target.runAsUser !== undefined) user.push(`--setuid=${target.runAsUser}`);
    return succeeds('nsenter', [...nsenter, ...user, '--', ...probe.exec.command], target.env, timeoutMs);
  }

  // NOTE: grpc probes are not implemented and never succeed.
  return false;
}

// Resolves a probe's port, a number or the name of a container port.
export function resolvePort(port: number | string, container: V1Container): number {
  if (typeof port === 'number') return port;
  if (/^\d+$/.test(port)) return Number(port);
  const named = (container.ports ?? []).find((candidate) => candidate.name === port);
  if (!named) throw new Error(`container ${container.name} has no port named ${JSON.stringify(port)}`);
  return named.containerPort;
}

function succeeds(command: string, args: string[], env: Record<string, string>, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    execFile(command, args, { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env }, timeout: timeoutMs }, (err) => resolve(!err));
  });
}

function outputOf(command: string, args: string[], env: Record<string, string>, timeoutMs: number): Promise<string> {
  return new Promise((resolve) => {
    execFile(command, args, { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env }, timeout: timeoutMs }, (_err, stdout) => resolve(stdout));
  });
}
