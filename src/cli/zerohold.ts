#!/usr/bin/env node
// zerohold: prints what the zerohold agent on this node manages and holds,
// read from the agent's local API on its unix socket.
//
// Exit status: 0 on success, 1 when the agent cannot be reached or returns
// an error, 2 on a usage error.

import { request } from 'node:http';
import { parseArgs } from 'node:util';

import type { HeldFlowSummary, InterfaceSummary, WorkloadSummary } from '../agent/local-api.js';
import { formatAge, formatEndpoint, formatSeconds, NONE, renderTable } from './table.js';

const DEFAULT_SOCKET = '/run/zerohold/agent.sock';
const REQUEST_TIMEOUT_MS = 10_000;
const OUTPUT_FORMATS = ['table', 'json'] as const;
type OutputFormat = (typeof OUTPUT_FORMATS)[number];

const HELP = `Usage: zerohold COMMAND [OPTIONS]

Prints what the zerohold agent on this node manages and holds. The agent
serves this on a unix socket, set by api.socket in its configuration.

Commands:
  status    List the managed workloads: Services, phase, flows held now,
            duration of the last cold start, time since the last wake,
            and what this node waits for before the held flows go out.
  held      List the flows held now, waiting for their workload to wake.
  interfaces
            List the interfaces with the hold program in standalone mode,
            and those where the last attach failed, with the error. Only
            clients whose packets enter these interfaces are held.

Options:
  --socket PATH         Unix socket of the agent's local API. Default: the
                        ZEROHOLD_SOCKET environment variable, else
                        ${DEFAULT_SOCKET}.
  -o, --output FORMAT   Output format: "table" (aligned columns, the default)
                        or "json" (the agent's response, indented).
  -h, --help            Print this help and exit.

Exit status: 0 on success, also when the output lists failed attaches, 1
when the agent cannot be reached or returns an error, 2 on a usage error.
`;

// An invalid command line. Exits with status 2.
class UsageError extends Error {}

// The agent could not be reached or returned an error. Exits with status 1.
class AgentError extends Error {}

interface WorkloadsResponse {
  node: string;
  workloads: WorkloadSummary[];
}

interface HeldResponse {
  node: string;
  flows: HeldFlowSummary[];
}

interface InterfacesResponse {
  node: string;
  entries?: string[];
  interfaces: InterfaceSummary[];
}

// The local API path and the response's list field of each command.
const COMMANDS = {
  status: { path: '/v1/workloads', field: 'workloads' },
  held: { path: '/v1/held', field: 'flows' },
  interfaces: { path: '/v1/interfaces', field: 'interfaces' },
} as const;
type Command = keyof typeof COMMANDS;
const COMMAND_LIST = Object.keys(COMMANDS)
  .map((name) => `"${name}"`)
  .join(', ');

interface Invocation {
  command: Command | 'help';
  socketPath: string;
  output: OutputFormat;
}

function parseCommandLine(args: string[]): Invocation {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        socket: { type: 'string' },
        output: { type: 'string', short: 'o', default: 'table' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (err) {
    // parseArgs raises TypeErrors with ERR_PARSE_ARGS_* codes. The message
    // for an unknown option goes on to explain "--", which misleads here.
    const { code, message } = err as NodeJS.ErrnoException;
    const option = /'([^']+)'/.exec(message)?.[1];
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && option) throw new UsageError(`unknown option ${option}`);
    throw new UsageError(message);
  }
  const { values, positionals } = parsed;

  const socketPath = values.socket ?? (process.env.ZEROHOLD_SOCKET || DEFAULT_SOCKET);
  if (socketPath === '') throw new UsageError('option --socket is empty, expected the path of the agent socket');

  const output = values.output!;
  if (!(OUTPUT_FORMATS as readonly string[]).includes(output)) {
    throw new UsageError(`invalid output format ${JSON.stringify(output)}, expected one of: ${OUTPUT_FORMATS.join(', ')}`);
  }

  if (values.help) return { command: 'help', socketPath, output: output as OutputFormat };
  if (positionals.length === 0) throw new UsageError(`missing command, expected one of ${COMMAND_LIST}`);
  if (positionals.length > 1) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[1])} after command ${JSON.stringify(positionals[0])}`);

  const command = positionals[0]!;
  if (!Object.hasOwn(COMMANDS, command)) {
    throw new UsageError(`unknown command ${JSON.stringify(command)}, expected one of ${COMMAND_LIST}`);
  }
  return { command: command as Command, socketPath, output: output as OutputFormat };
}

function describeConnectError(socketPath: string, err: NodeJS.ErrnoException): string {
  const fix = 'Is the zerohold agent running on this node? If its api.socket setting is another path, pass --socket PATH or set ZEROHOLD_SOCKET.';
  switch (err.code) {
    case 'ENOENT':
      return `cannot connect to the agent: socket ${socketPath} not found. ${fix}`;
    case 'ECONNREFUSED':
      return `cannot connect to the agent: connection to ${socketPath} refused, so no process is listening on it. ${fix}`;
    case 'EACCES':
      return `cannot connect to the agent: permission denied on socket ${socketPath}. Run zerohold as root or as a member of the socket's group.`;
    default:
      return `cannot connect to the agent on socket ${socketPath}: ${err.message}`;
  }
}

// Sends GET path to the agent and returns the parsed JSON body of a 200
// response. Raises AgentError on every other outcome.
function getJson(socketPath: string, path: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, method: 'GET', headers: { Accept: 'application/json' }, timeout: REQUEST_TIMEOUT_MS }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', (err) => reject(new AgentError(`reading the response of the agent on ${socketPath} failed: ${err.message}`)));
      res.on('end', () => {
        try {
          resolve(parseResponse(socketPath, path, res.statusCode ?? 0, Buffer.concat(chunks).toString('utf8')));
        } catch (err) {
          reject(err);
        }
      });
    });

    req.on('timeout', () => {
      req.destroy(new AgentError(`the agent on socket ${socketPath} did not respond to GET ${path} within ${REQUEST_TIMEOUT_MS / 1000}s`));
    });
    req.on('error', (err: NodeJS.ErrnoException) => {
      reject(err instanceof AgentError ? err : new AgentError(describeConnectError(socketPath, err)));
    });
    req.end();
  });
}

function parseResponse(socketPath: string, path: string, status: number, text: string): unknown {
  const excerpt = text.length > 200 ? `${text.slice(0, 200)}...` : text;
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new AgentError(`the agent on socket ${socketPath} returned HTTP ${status} for GET ${path} with a body that is not JSON: ${JSON.stringify(excerpt)}`);
  }

  if (status !== 200) {
    const message = typeof (body as { error?: unknown })?.error === 'string' ? (body as { error: string }).error : excerpt;
    // An agent older than the CLI lacks the newer paths.
    const hint = status === 404 ? ' Is the agent older than this CLI? Run the CLI of the agent image.' : '';
    throw new AgentError(`the agent on socket ${socketPath} returned HTTP ${status} for GET ${path}: ${message}${hint}`);
  }
  return body;
}

// Raises AgentError unless body[field] is an array, so that a response
// from an agent of another version fails with a message instead of a
// TypeError.
function requireArray(socketPath: string, path: string, body: unknown, field: string): void {
  if (typeof body !== 'object' || body === null || !Array.isArray((body as Record<string, unknown>)[field])) {
    throw new AgentError(`the agent on socket ${socketPath} returned an unexpected response for GET ${path}: it has no "${field}" array. Are the zerohold CLI and agent the same version?`);
  }
}

function orNone(value: string | null | undefined): string {
  return value === null || value === undefined || value === '' ? NONE : value;
}

function renderWorkloads(response: WorkloadsResponse, nowMs: number): string {
  const rows = [...response.workloads]
    .sort((a, b) => a.workload.localeCompare(b.workload))
    .map((w) => [
      w.workload,
      orNone(w.services.join(',')),
      w.phase,
      String(w.heldFlows),
      w.lastColdStartSeconds === null ? NONE : formatSeconds(w.lastColdStartSeconds),
      w.lastWakeTime === null ? NONE : formatAge(nowMs - Date.parse(w.lastWakeTime)),
      // An agent from before this field sends none.
      orNone((w.waitingFor ?? []).join(', ')),
    ]);
  return renderTable(['WORKLOAD', 'SERVICES', 'PHASE', 'HELD', 'LAST COLD START', 'LAST WAKE', 'WAITING FOR'], rows);
}

function renderHeld(response: HeldResponse): string {
  // Grouped by workload, the longest held first within each.
  const rows = [...response.flows]
    .sort((a, b) => a.workload.localeCompare(b.workload) || b.heldForSeconds - a.heldForSeconds)
    .map((f) => [
      f.workload,
      f.protocol.toUpperCase(),
      formatEndpoint(f.source, f.sourcePort),
      formatEndpoint(f.destination, f.destinationPort),
      formatSeconds(f.heldForSeconds),
      String(f.frames),
    ]);
  return renderTable(['WORKLOAD', 'PROTO', 'CLIENT', 'FRONTEND', 'HELD FOR', 'FRAMES'], rows);
}

function renderInterfaces(response: InterfacesResponse): string {
  // An error of the addon may span lines, which would break the table.
  const state = (i: InterfaceSummary) => (i.state === 'attached' ? 'attached' : `failed: ${(i.error ?? 'unknown error').replaceAll('\n', '; ')}`);
  const rows = response.interfaces.map((i) => [i.name, String(i.ifindex), i.hook, i.entry, state(i)]);
  return renderTable(['INTERFACE', 'IFINDEX', 'HOOK', 'ENTRY', 'STATE'], rows);
}

async function run(invocation: Invocation): Promise<void> {
  const { command, socketPath, output } = invocation;
  if (command === 'help') {
    process.stdout.write(HELP);
    return;
  }

  const { path, field } = COMMANDS[command];
  const body = await getJson(socketPath, path);
  requireArray(socketPath, path, body, field);

  if (output === 'json') {
    process.stdout.write(`${JSON.stringify(body, null, 2)}\n`);
    return;
  }

  // Like kubectl, an empty list prints a note on stderr and no header.
  if (command === 'status') {
    const response = body as WorkloadsResponse;
    if (response.workloads.length === 0) process.stderr.write(`No managed workloads on node ${response.node}.\n`);
    else process.stdout.write(renderWorkloads(response, Date.now()));
  } else if (command === 'held') {
    const response = body as HeldResponse;
    if (response.flows.length === 0) process.stderr.write(`No held flows on node ${response.node}.\n`);
    else process.stdout.write(renderHeld(response));
  } else {
    const response = body as InterfacesResponse;
    if (response.interfaces.length > 0) process.stdout.write(renderInterfaces(response));
    else if ((response.entries ?? []).length > 0) process.stderr.write(`No interface on node ${response.node} matches the agent's interfaces entries (${response.entries!.join(', ')}) yet.\n`);
    else process.stderr.write(`No interfaces with the hold program on node ${response.node}. Only standalone mode attaches to interfaces.\n`);
  }
}

async function main(): Promise<void> {
  try {
    await run(parseCommandLine(process.argv.slice(2)));
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`zerohold: ${err.message}\nRun "zerohold --help" for usage.\n`);
      process.exitCode = 2;
    } else if (err instanceof AgentError) {
      process.stderr.write(`zerohold: ${err.message}\n`);
      process.exitCode = 1;
    } else {
      throw err;
    }
  }
}

// Setting exitCode instead of calling process.exit lets a pipe drain the
// output first.
main().catch((err: Error) => {
  process.stderr.write(`zerohold: ${err.stack ?? err.message}\n`);
  process.exitCode = 1;
});
