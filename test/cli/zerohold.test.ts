import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { pino } from 'pino';

import { LocalApi, type AgentState, type HeldFlowSummary, type InterfaceSummary, type WorkloadSummary } from '../../src/agent/local-api.js';
import { formatAge, formatEndpoint, formatSeconds, humanDuration, renderTable } from '../../src/cli/table.js';

// The compiled CLI, run as a child process like a user runs it.
const CLI = fileURLToPath(new URL('../../src/cli/zerohold.js', import.meta.url));

const DEFAULT_SOCKET = '/run/zerohold/agent.sock';
const HOUR_MS = 3_600_000;

const workloads: WorkloadSummary[] = [
  {
    workload: 'shop/web',
    source: 'ScaleToZero',
    target: { kind: 'Deployment', name: 'web' },
    services: ['web', 'web-admin'],
    phase: 'Waking',
    gateClosed: true,
    heldFlows: 2,
    heldBytes: 148,
    lastColdStartSeconds: 4.25,
    // Whole hours, so that the age in the table does not depend on how
    // long the CLI takes to start.
    lastWakeTime: new Date(Date.now() - 3 * HOUR_MS).toISOString(),
    lastActivityTime: new Date(Date.now() - 3 * HOUR_MS).toISOString(),
    waitingFor: ['198.18.7.1:53/udp to listen', "the node's load balancer"],
  },
  {
    workload: 'blog/api',
    source: 'annotation',
    target: { kind: 'StatefulSet', name: 'api' },
    services: [],
    phase: 'Warm',
    gateClosed: false,
    heldFlows: 0,
    heldBytes: 0,
    lastColdStartSeconds: null,
    lastWakeTime: null,
    lastActivityTime: null,
    waitingFor: [],
  },
];

const flows: HeldFlowSummary[] = [
  {
    workload: 'shop/web',
    protocol: 'tcp',
    source: '198.18.0.5',
    sourcePort: 41000,
    destination: '198.19.0.10',
    destinationPort: 80,
    interface: 'eth0',
    heldForSeconds: 2.5,
    frames: 3,
  },
  {
    workload: 'shop/web',
    protocol: 'udp',
    source: 'fd5a::5',
    sourcePort: 5353,
    destination: 'fd5a:1::10',
    destinationPort: 53,
    interface: 4,
    heldForSeconds: 75,
    frames: 1,
  },
];

const interfaces: InterfaceSummary[] = [
  { name: 'eth0', ifindex: 2, hook: 'xdp', entry: 'eth0', state: 'attached', error: null },
  { name: 'veth12', ifindex: 31, hook: 'tc', entry: 'veth+', state: 'attached', error: null },
  { name: 'vethbr', ifindex: 9, hook: 'tc', entry: 'veth+', state: 'failed', error: 'bpf_link_create failed: Device or resource busy (EBUSY)\nanother program is attached' },
];

const state: AgentState = {
  node: 'node-1',
  workloads: () => workloads,
  heldFlows: () => flows,
  interfaces: () => ({ entries: ['eth0', 'veth+'], interfaces }),
};

let dir: string;
let socketPath: string;
let api: LocalApi;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'zerohold-cli-'));
  socketPath = join(dir, 'agent.sock');
  api = new LocalApi(state, pino({ level: 'silent' }));
  await api.listen(socketPath);
});

after(async () => {
  await api.close();
  await rm(dir, { recursive: true, force: true });
});

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runCli(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    const childEnv = { ...process.env, ...env };
    if (!('ZEROHOLD_SOCKET' in env)) delete childEnv.ZEROHOLD_SOCKET;
    execFile(process.execPath, [CLI, ...args], { env: childEnv, timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err ? ((err as { code?: number | string }).code as number | null) : 0;
      resolve({ code: typeof code === 'number' ? code : null, stdout, stderr });
    });
  });
}

// Starts a plain HTTP server on a unix socket that sends a fixed reply,
// standing in for a broken or foreign agent.
async function startFixedServer(path: string, status: number, contentType: string, body: string): Promise<Server> {
  const server = createServer((_req, res) => res.writeHead(status, { 'Content-Type': contentType }).end(body));
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return server;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

describe('zerohold status', () => {
  test('table lists workloads', async () => {
    const result = await runCli(['status', '--socket', socketPath]);

    assert.equal(result.code, 0, result.stderr);
    assert.equal(
      result.stdout,
      [
        'WORKLOAD   SERVICES        PHASE    HELD   LAST COLD START   LAST WAKE   WAITING FOR',
        'blog/api   <none>          Warm     0      <none>            <none>      <none>',
        "shop/web   web,web-admin   Waking   2      4.3s              3h ago      198.18.7.1:53/udp to listen, the node's load balancer",
        '',
      ].join('\n'),
    );
    assert.equal(result.stderr, '');
  });

  test('json prints response', async () => {
    const result = await runCli(['status', '--socket', socketPath, '-o', 'json']);

    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(JSON.parse(result.stdout), { node: 'node-1', workloads });
  });

  test('socket from environment', async () => {
    const result = await runCli(['status', '--output=json'], { ZEROHOLD_SOCKET: socketPath });

    assert.equal(result.code, 0, result.stderr);
    assert.equal(JSON.parse(result.stdout).node, 'node-1');
  });

  test('option overrides environment', async () => {
    const result = await runCli(['status', '--socket', socketPath], { ZEROHOLD_SOCKET: join(dir, 'elsewhere.sock') });
    assert.equal(result.code, 0, result.stderr);
  });

  test('empty list prints note', async (t) => {
    const path = join(dir, 'empty.sock');
    const empty = new LocalApi({ node: 'node-2', workloads: () => [], heldFlows: () => [], interfaces: () => ({ entries: [], interfaces: [] }) }, pino({ level: 'silent' }));
    await empty.listen(path);
    t.after(() => empty.close());

    const result = await runCli(['status', '--socket', path]);

    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, '');
    assert.equal(result.stderr, 'No managed workloads on node node-2.\n');
  });
});

describe('zerohold held', () => {
  test('table lists flows', async () => {
    const result = await runCli(['held', '--socket', socketPath]);

    assert.equal(result.code, 0, result.stderr);
    assert.equal(
      result.stdout,
      [
        'WORKLOAD   PROTO   CLIENT             FRONTEND          HELD FOR   FRAMES',
        'shop/web   UDP     [fd5a::5]:5353     [fd5a:1::10]:53   75s        1',
        'shop/web   TCP     198.18.0.5:41000   198.19.0.10:80    2.5s       3',
        '',
      ].join('\n'),
    );
  });

  test('json prints response', async () => {
    const result = await runCli(['held', '--socket', socketPath, '-o', 'json']);

    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(JSON.parse(result.stdout), { node: 'node-1', flows });
  });
});

describe('zerohold interfaces', () => {
  test('table lists interfaces', async () => {
    const result = await runCli(['interfaces', '--socket', socketPath]);

    assert.equal(result.code, 0, result.stderr);
    assert.equal(
      result.stdout,
      [
        'INTERFACE   IFINDEX   HOOK   ENTRY   STATE',
        'eth0        2         xdp    eth0    attached',
        'veth12      31        tc     veth+   attached',
        'vethbr      9         tc     veth+   failed: bpf_link_create failed: Device or resource busy (EBUSY); another program is attached',
        '',
      ].join('\n'),
    );
  });

  test('empty list names the mode', async (t) => {
    const path = join(dir, 'no-interfaces.sock');
    const chained = new LocalApi({ node: 'node-3', workloads: () => [], heldFlows: () => [], interfaces: () => ({ entries: [], interfaces: [] }) }, pino({ level: 'silent' }));
    await chained.listen(path);
    t.after(() => chained.close());

    const result = await runCli(['interfaces', '--socket', path]);

    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, '');
    assert.equal(result.stderr, 'No interfaces with the hold program on node node-3. Only standalone mode attaches to interfaces.\n');
  });

  test('empty list names the entries', async (t) => {
    const path = join(dir, 'no-match.sock');
    const standalone = new LocalApi({ node: 'node-4', workloads: () => [], heldFlows: () => [], interfaces: () => ({ entries: ['cali+'], interfaces: [] }) }, pino({ level: 'silent' }));
    await standalone.listen(path);
    t.after(() => standalone.close());

    const result = await runCli(['interfaces', '--socket', path]);

    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stderr, "No interface on node node-4 matches the agent's interfaces entries (cali+) yet.\n");
  });

  test('status of an older agent', async (t) => {
    // An agent from before waitingFor sends workloads without it.
    const path = join(dir, 'before-waiting.sock');
    const { waitingFor: _, ...older } = workloads[1]!;
    const server = await startFixedServer(path, 200, 'application/json', JSON.stringify({ node: 'node-5', workloads: [older] }));
    t.after(() => closeServer(server));

    const result = await runCli(['status', '--socket', path]);

    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.split('\n')[1], 'blog/api   <none>     Warm    0      <none>            <none>      <none>');
  });

  test('missing path hints at an older agent', async (t) => {
    const path = join(dir, 'older.sock');
    const server = await startFixedServer(path, 404, 'application/json', JSON.stringify({ error: 'path /v1/interfaces not found, the endpoints are /v1/workloads and /v1/held' }));
    t.after(() => closeServer(server));

    const result = await runCli(['interfaces', '--socket', path]);

    assert.equal(result.code, 1);
    assert.match(result.stderr, /returned HTTP 404 for GET \/v1\/interfaces: .* Is the agent older than this CLI\?/);
  });
});

describe('zerohold errors', () => {
  test('missing socket exits 1', async () => {
    const missing = join(dir, 'missing.sock');

    const result = await runCli(['status', '--socket', missing]);

    assert.equal(result.code, 1);
    assert.equal(result.stdout, '');
    assert.match(result.stderr, new RegExp(`socket ${missing.replaceAll('.', '\\.')} not found`));
    assert.match(result.stderr, /Is the zerohold agent running on this node\?/);
    assert.match(result.stderr, /pass --socket PATH or set ZEROHOLD_SOCKET/);
  });

  test('default socket path named', async (t) => {
    if (await exists(DEFAULT_SOCKET)) {
      t.skip(`${DEFAULT_SOCKET} exists, so an agent may be running on this machine`);
      return;
    }

    const result = await runCli(['held'], { ZEROHOLD_SOCKET: '' });

    assert.equal(result.code, 1);
    assert.match(result.stderr, /\/run\/zerohold\/agent\.sock/);
  });

  test('error status exits 1', async (t) => {
    const path = join(dir, 'failing.sock');
    const server = await startFixedServer(path, 500, 'application/json', JSON.stringify({ error: 'controller not started' }));
    t.after(() => closeServer(server));

    const result = await runCli(['status', '--socket', path]);

    assert.equal(result.code, 1);
    assert.match(result.stderr, /returned HTTP 500 for GET \/v1\/workloads: controller not started/);
  });

  test('non-JSON response exits 1', async (t) => {
    const path = join(dir, 'text.sock');
    const server = await startFixedServer(path, 200, 'text/plain', 'hello from something else');
    t.after(() => closeServer(server));

    const result = await runCli(['held', '--socket', path]);

    assert.equal(result.code, 1);
    assert.match(result.stderr, /returned HTTP 200 for GET \/v1\/held with a body that is not JSON: "hello from something else"/);
  });

  test('foreign JSON shape exits 1', async (t) => {
    const path = join(dir, 'foreign.sock');
    const server = await startFixedServer(path, 200, 'application/json', JSON.stringify({ items: [] }));
    t.after(() => closeServer(server));

    const result = await runCli(['status', '--socket', path]);

    assert.equal(result.code, 1);
    assert.match(result.stderr, /it has no "workloads" array/);
  });

  const usageCases: { name: string; args: string[]; message: RegExp }[] = [
    { name: 'no command', args: [], message: /missing command, expected one of "status", "held", "interfaces"/ },
    { name: 'unknown command', args: ['pods'], message: /unknown command "pods"/ },
    { name: 'extra argument', args: ['status', 'shop/web'], message: /unexpected argument "shop\/web"/ },
    { name: 'unknown option', args: ['status', '--watch'], message: /unknown option --watch/ },
    { name: 'invalid output', args: ['status', '-o', 'yaml'], message: /invalid output format "yaml", expected one of: table, json/ },
    { name: 'missing option value', args: ['status', '--socket'], message: /'--socket <value>' argument missing/ },
    { name: 'empty socket', args: ['status', '--socket='], message: /option --socket is empty/ },
  ];
  for (const { name, args, message } of usageCases) {
    test(`usage error exits 2: ${name}`, async () => {
      const result = await runCli(args);

      assert.equal(result.code, 2);
      assert.match(result.stderr, message);
      assert.match(result.stderr, /Run "zerohold --help" for usage\./);
    });
  }

  test('help exits 0', async () => {
    const result = await runCli(['--help']);

    assert.equal(result.code, 0);
    assert.match(result.stdout, /^Usage: zerohold COMMAND \[OPTIONS\]/);
    assert.match(result.stdout, /--socket PATH +Unix socket of the agent's local API/);
    assert.match(result.stdout, /-o, --output FORMAT +Output format/);
  });
});

describe('table formatting', () => {
  test('humanDuration matches kubectl', () => {
    const cases: [number, string][] = [
      [-1500, '0s'],
      [-2500, '<invalid>'],
      [0, '0s'],
      [119_999, '119s'],
      [120_000, '2m'],
      [312_000, '5m12s'],
      [600_000, '10m'],
      [179 * 60_000, '179m'],
      [3 * HOUR_MS, '3h'],
      [7 * HOUR_MS + 30 * 60_000, '7h30m'],
      [47 * HOUR_MS, '47h'],
      [52 * HOUR_MS, '2d4h'],
      [8 * 24 * HOUR_MS, '8d'],
      [730 * 24 * HOUR_MS, '2y'],
      [800 * 24 * HOUR_MS, '2y70d'],
      [9 * 365 * 24 * HOUR_MS, '9y'],
    ];
    for (const [ms, expected] of cases) {
      assert.equal(humanDuration(ms), expected, `humanDuration(${ms})`);
    }
  });

  test('formatAge appends ago', () => {
    const cases: [number, string][] = [
      [17_000, '17s ago'],
      [3 * HOUR_MS, '3h ago'],
      [-1500, '0s ago'],
      [-2500, '<invalid>'],
      [Number.NaN, '<invalid>'],
    ];
    for (const [ms, expected] of cases) {
      assert.equal(formatAge(ms), expected, `formatAge(${ms})`);
    }
  });

  test('formatSeconds keeps precision', () => {
    const cases: [number, string][] = [
      [0.25, '250ms'],
      [0.9996, '1.0s'],
      [4.25, '4.3s'],
      [59.96, '60s'],
      [75, '75s'],
      [600, '10m'],
      [-1, '<invalid>'],
    ];
    for (const [seconds, expected] of cases) {
      assert.equal(formatSeconds(seconds), expected, `formatSeconds(${seconds})`);
    }
  });

  test('formatEndpoint brackets IPv6', () => {
    assert.equal(formatEndpoint('198.18.0.5', 80), '198.18.0.5:80');
    assert.equal(formatEndpoint('fd5a::5', 80), '[fd5a::5]:80');
  });

  test('renderTable aligns columns', () => {
    assert.equal(renderTable(['A', 'LONG HEADER', 'C'], [['wide cell', 'x', '']]), 'A           LONG HEADER   C\nwide cell   x\n');
  });
});
