// Argument lists for the clients that the testbed runs against its sample
// workloads (curl, psql, redis-cli, dig), and parsers for their output.
// Every client gets a timeout well above a cold start, so a test fails on
// its assertion and not on the test runner's timeout.

import { writeFile } from 'node:fs/promises';

// Written after the body by curl -w: the status code and the time from the
// start until the TCP handshake completed, in seconds.
const CURL_WRITE_OUT = '\n@@zh %{http_code} %{time_connect}\n';

export interface CurlTiming {
  httpCode: number;
  // Seconds from curl's start to the completed TCP handshake.
  connectSeconds: number;
}

// Returns curl arguments that print the body and then one timing line.
// The host may be an IPv6 address, which gets brackets here.
export function curlArgs(host: string, port: number, options: { path?: string; maxTimeSeconds?: number; extra?: string[] } = {}): string[] {
  const hostPart = host.includes(':') ? `[${host}]` : host;
  const url = `http://${hostPart}:${port}${options.path ?? '/'}`;
  return ['-sS', '--max-time', String(options.maxTimeSeconds ?? 20), '-w', CURL_WRITE_OUT, ...(options.extra ?? []), url];
}

// Splits curl output made with curlArgs() into the body and the timings.
// Returns undefined timings when the line is missing.
export function parseCurl(stdout: string): { body: string; timing: CurlTiming | undefined } {
  const index = stdout.lastIndexOf('\n@@zh ');
  if (index === -1) return { body: stdout, timing: undefined };
  const [code, connect] = stdout.slice(index + '\n@@zh '.length).trim().split(' ');
  return { body: stdout.slice(0, index), timing: { httpCode: Number(code), connectSeconds: Number(connect) } };
}

// Writes a curl configuration for `count` parallel GET requests to the
// same URL, each with its own timing line and no body, and returns the
// curl arguments that run it. All connections open at once
// (--parallel-immediate), so every SYN arrives before the first reply.
export async function parallelCurl(configPath: string, host: string, port: number, count: number, maxTimeSeconds = 30): Promise<string[]> {
  const hostPart = host.includes(':') ? `[${host}]` : host;
  const entries: string[] = [];
  for (let i = 0; i < count; i++) entries.push(`url = "http://${hostPart}:${port}/?client=${i}"`, 'output = "/dev/null"');
  await writeFile(configPath, `${entries.join('\n')}\n`);
  return [
    '-sS',
    '--parallel',
    '--parallel-immediate',
    '--parallel-max',
    String(count),
    '--max-time',
    String(maxTimeSeconds),
    '-w',
    '%{http_code} %{time_connect}\n',
    '--config',
    configPath,
  ];
}

// Parses the timing lines of parallelCurl(), one per request.
export function parseParallelCurl(stdout: string): CurlTiming[] {
  return stdout
    .split('\n')
    .filter((line) => /^\d{3} [\d.]+$/.test(line))
    .map((line) => {
      const [code, connect] = line.split(' ');
      return { httpCode: Number(code), connectSeconds: Number(connect) };
    });
}

// psql arguments that run one query as user postgres (trust
// authentication) and print the bare result.
export function psqlArgs(host: string, query: string, connectTimeoutSeconds = 20): string[] {
  return [`host=${host} port=5432 user=postgres dbname=postgres connect_timeout=${connectTimeoutSeconds}`, '-X', '-tA', '-c', query];
}

// redis-cli arguments that send the command `repeat` times, intervalSeconds
// apart, over one connection.
export function redisCliArgs(host: string, command: string[], options: { repeat?: number; intervalSeconds?: number } = {}): string[] {
  const args = ['-h', host, '-p', '6379'];
  if (options.repeat !== undefined) args.push('-r', String(options.repeat), '-i', String(options.intervalSeconds ?? 1));
  return [...args, ...command];
}

// dig arguments for one A query with a single try. dig sends no second
// datagram, so a reply shows that the first one got through.
export function digArgs(server: string, name: string, timeoutSeconds = 15): string[] {
  return [`@${server}`, '+short', `+time=${timeoutSeconds}`, '+tries=1', name, 'A'];
}
