// A Prometheus server from Debian's prometheus package, started by a test:
// it listens on loopback, scrapes the given loopback targets every second
// and evaluates the given rule file every second. Stopped by its PID.

import { type ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';

import { stringify } from 'yaml';

import { waitFor } from '../lib/netns.js';
import { MISSING_PROMETHEUS, prometheusBinary } from './rules.js';

const OUTPUT_LIMIT_CHARS = 20_000;

export interface PrometheusOptions {
  // Directory for the configuration and the TSDB. The caller removes it.
  dir: string;
  ruleFile: string;
  // The job label, and host:port targets on loopback with the labels
  // that the PodMonitor's relabeling gives them, such as node.
  job: string;
  targets: string[];
  labels?: Record<string, string>;
}

export interface PrometheusAlert {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  state: 'pending' | 'firing';
}

export class PrometheusServer {
  output = '';

  private constructor(
    private readonly child: ChildProcess,
    readonly url: string,
  ) {
    const keep = (chunk: Buffer) => (this.output = (this.output + chunk.toString()).slice(-OUTPUT_LIMIT_CHARS));
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
  }

  static async start(options: PrometheusOptions): Promise<PrometheusServer> {
    for (const target of options.targets) {
      if (!target.startsWith('127.0.0.1:')) throw new Error(`invalid scrape target ${target}: tests scrape loopback only`);
    }
    const config = path.join(options.dir, 'prometheus.yml');
    writeFileSync(
      config,
      stringify({
        global: { scrape_interval: '1s', evaluation_interval: '1s' },
        rule_files: [options.ruleFile],
        scrape_configs: [{ job_name: options.job, static_configs: [{ targets: options.targets, labels: options.labels ?? {} }] }],
      }),
    );

    const port = await freeLoopbackPort();
    const child = spawn(
      prometheusBinary('prometheus'),
      [`--config.file=${config}`, `--storage.tsdb.path=${path.join(options.dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const spawned = new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', (err) => reject(new Error(`could not start prometheus (${err.message}): ${MISSING_PROMETHEUS}`)));
    });
    await spawned;

    const server = new PrometheusServer(child, `http://127.0.0.1:${port}`);
    try {
      await waitFor('Prometheus ready', async () => ((await fetch(`${server.url}/-/ready`).catch(() => null))?.ok ? true : undefined), 30_000, 100);
    } catch (err) {
      await server.stop();
      throw new Error(`${(err as Error).message}\nprometheus output:\n${server.output}`);
    }
    return server;
  }

  // Runs an instant query and returns the result vector.
  async query(expr: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]> {
    const body = await this.get(`/api/v1/query?query=${encodeURIComponent(expr)}`);
    return (body as { result: { metric: Record<string, string>; value: [number, string] }[] }).result;
  }

  async alerts(): Promise<PrometheusAlert[]> {
    return ((await this.get('/api/v1/alerts')) as { alerts: PrometheusAlert[] }).alerts;
  }

  async rules(): Promise<{ name: string; health: string; lastError?: string }[]> {
    const body = (await this.get('/api/v1/rules')) as { groups: { rules: { name: string; health: string; lastError?: string }[] }[] };
    return body.groups.flatMap((group) => group.rules);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    process.kill(this.child.pid!, 'SIGTERM');
    const timer = setTimeout(() => process.kill(this.child.pid!, 'SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }

  private async get(pathAndQuery: string): Promise<unknown> {
    const response = await fetch(`${this.url}${pathAndQuery}`);
    const body = (await response.json()) as { status: string; data: unknown; error?: string };
    if (body.status !== 'success') throw new Error(`GET ${pathAndQuery} on Prometheus failed: ${body.error ?? response.status}`);
    return body.data;
  }
}

// A port that was free on 127.0.0.1 a moment ago.
function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}
