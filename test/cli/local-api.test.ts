import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { lstat, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { pino } from 'pino';

import { LocalApi, type AgentState, type HeldFlowSummary, type InterfacesReport, type InterfaceSummary, type WorkloadSummary } from '../../src/agent/local-api.js';

const log = pino({ level: 'silent' });

const WORKLOAD: WorkloadSummary = {
  workload: 'shop/web',
  source: 'ScaleToZero',
  target: { kind: 'Deployment', name: 'web' },
  services: ['web'],
  phase: 'Cold',
  gateClosed: true,
  heldFlows: 1,
  heldBytes: 74,
  lastColdStartSeconds: 1.5,
  lastWakeTime: '2025-01-01T10:00:00.000Z',
  lastActivityTime: null,
  waitingFor: ['a Ready endpoint'],
};

const FLOW: HeldFlowSummary = {
  workload: 'shop/web',
  protocol: 'tcp',
  source: '198.18.0.5',
  sourcePort: 41000,
  destination: '198.19.0.10',
  destinationPort: 80,
  interface: 'eth0',
  heldForSeconds: 2.5,
  frames: 2,
};

const INTERFACE: InterfaceSummary = { name: 'veth3', ifindex: 7, hook: 'tc', entry: 'veth+', state: 'attached', error: null };

// A plain object, so a test can make a read fail.
const state = {
  node: 'node-1',
  failure: null as Error | null,
  workloads(): WorkloadSummary[] {
    if (this.failure) throw this.failure;
    return [WORKLOAD];
  },
  heldFlows(): HeldFlowSummary[] {
    return [FLOW];
  },
  interfaces(): InterfacesReport {
    return { entries: ['veth+'], interfaces: [INTERFACE] };
  },
} satisfies AgentState & { failure: Error | null };

let dir: string;
let socketPath: string;
let api: LocalApi;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'zerohold-local-api-'));
  socketPath = join(dir, 'agent.sock');
  api = new LocalApi(state, log);
  await api.listen(socketPath);
});

after(async () => {
  await api.close();
  await rm(dir, { recursive: true, force: true });
});

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

function send(path: string, method = 'GET', socket = socketPath): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: socket, path, method }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

function listenPlain(path: string): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer((socket) => socket.destroy());
    server.once('error', reject);
    server.listen(path, () => resolve(server));
  });
}

// Node removes a server's socket file on close, so only a process that is
// killed leaves one behind, like an agent that ended with SIGKILL.
async function leaveStaleSocket(path: string): Promise<void> {
  const code = `require('node:net').createServer().listen(process.argv[1], () => console.log('listening'))`;
  const child = spawn(process.execPath, ['-e', code, path], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = once(child, 'exit');
  await once(child.stdout, 'data');
  child.kill('SIGKILL');
  await exited;
  assert.ok((await lstat(path)).isSocket(), 'the killed server must leave its socket file');
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

test('workloads endpoint returns state', async () => {
  const reply = await send('/v1/workloads');

  assert.equal(reply.status, 200);
  assert.equal(reply.headers['content-type'], 'application/json');
  assert.deepEqual(JSON.parse(reply.body), { node: 'node-1', workloads: [WORKLOAD] });
});

test('held endpoint returns flows', async () => {
  const reply = await send('/v1/held');

  assert.equal(reply.status, 200);
  assert.deepEqual(JSON.parse(reply.body), { node: 'node-1', flows: [FLOW] });
});

test('interfaces endpoint returns interfaces', async () => {
  const reply = await send('/v1/interfaces');

  assert.equal(reply.status, 200);
  assert.deepEqual(JSON.parse(reply.body), { node: 'node-1', entries: ['veth+'], interfaces: [INTERFACE] });
});

test('query string is ignored', async () => {
  const reply = await send('/v1/held?watch=true');
  assert.equal(reply.status, 200);
});

test('unknown path is 404 JSON', async () => {
  const reply = await send('/v1/pods');

  assert.equal(reply.status, 404);
  assert.equal(reply.headers['content-type'], 'application/json');
  assert.match(JSON.parse(reply.body).error, /path \/v1\/pods not found, the endpoints are \/v1\/workloads, \/v1\/held, \/v1\/interfaces$/);
});

test('unversioned path is 404', async () => {
  const reply = await send('/workloads');
  assert.equal(reply.status, 404);
});

test('POST is 405 with Allow', async () => {
  const reply = await send('/v1/workloads', 'POST');

  assert.equal(reply.status, 405);
  assert.equal(reply.headers.allow, 'GET, HEAD');
  assert.match(JSON.parse(reply.body).error, /method POST not allowed on \/v1\/workloads/);
});

test('HEAD returns headers only', async () => {
  const reply = await send('/v1/workloads', 'HEAD');

  assert.equal(reply.status, 200);
  assert.equal(reply.body, '');
});

test('failing state read is 500 JSON', async (t) => {
  state.failure = new Error('controller not started');
  t.after(() => (state.failure = null));

  const reply = await send('/v1/workloads');

  assert.equal(reply.status, 500);
  assert.match(JSON.parse(reply.body).error, /reading the agent state for \/v1\/workloads failed: controller not started/);
});

test('socket has mode 0660', async () => {
  const { mode } = await stat(socketPath);
  assert.equal(mode & 0o777, 0o660);
});

test('listen creates socket directory', async (t) => {
  const path = join(dir, 'run', 'zerohold', 'agent.sock');
  const other = new LocalApi(state, log);
  t.after(() => other.close());

  await other.listen(path);

  assert.equal((await send('/v1/held', 'GET', path)).status, 200);
});

test('listen replaces stale socket', async (t) => {
  const path = join(dir, 'stale.sock');
  await leaveStaleSocket(path);
  const other = new LocalApi(state, log);
  t.after(() => other.close());

  await other.listen(path);

  assert.equal((await send('/v1/held', 'GET', path)).status, 200);
});

test('listen rejects socket in use', async (t) => {
  const path = join(dir, 'busy.sock');
  const busy = await listenPlain(path);
  t.after(() => new Promise<void>((resolve) => busy.close(() => resolve())));
  const other = new LocalApi(state, log);

  await assert.rejects(other.listen(path), /another process is listening on the local API socket .*busy\.sock/);
  assert.ok(await exists(path), 'the socket of the running server must stay');
});

test('listen rejects regular file', async () => {
  const path = join(dir, 'not-a-socket');
  await writeFile(path, 'data');
  const other = new LocalApi(state, log);

  await assert.rejects(other.listen(path), /not-a-socket exists and is not a unix socket/);
  assert.ok(await exists(path), 'the file must stay');
});

test('close removes socket file', async () => {
  const path = join(dir, 'closing.sock');
  const other = new LocalApi(state, log);
  await other.listen(path);

  await other.close();

  assert.equal(await exists(path), false);
});

test('close ends keep-alive connections', async () => {
  const path = join(dir, 'keep-alive.sock');
  const other = new LocalApi(state, log);
  await other.listen(path);
  await new Promise<void>((resolve, reject) => {
    const req = request({ socketPath: path, path: '/v1/held', headers: { Connection: 'keep-alive' } }, (res) => {
      res.resume();
      res.on('end', resolve);
    });
    req.on('error', reject);
    req.end();
  });

  await other.close();

  assert.equal(await exists(path), false);
});
