// The zerohold demo: a two-node cluster simulated on this machine, where
// real clients wake real servers that zerohold scaled to zero, and the
// workloads go back to zero once idle. Run through scripts/demo.sh, as
// root. It removes everything it created when it ends, on Ctrl-C and
// SIGTERM too.

import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';

import { repoRoot } from '../src/paths.js';
import type { ClientResult } from '../test/testbed/client-run.js';
import { DNS_RECORD_ADDRESS, DNS_RECORD_NAME, dnsWorkload, nginxWorkload, postgresWorkload, redisWorkload } from '../test/testbed/servers.js';
import { type DeployedWorkload, Testbed } from '../test/testbed/testbed.js';
import type { TestbedEvent } from '../test/testbed/timeline.js';
import { collectColdStart, CURL_TIMING_FORMAT, type ColdStart } from './cold-start.js';
import { bold, dim, formatGap, red, Report } from './report.js';

const execFileAsync = promisify(execFile);

const IDLE_TIMEOUT = '15s';
const CLIENT_TIMEOUT_MS = 30_000;

interface Scenario {
  title: string;
  workload: DeployedWorkload;
  // The client's location, as the report names it.
  from: string;
  ns: string;
  command: string;
  args: string[];
  responseLabel: string;
  // Returns what is wrong with the client's output, or null.
  check: (result: ClientResult) => string | null;
}

interface Outcome {
  scenario: Scenario;
  result: ClientResult;
  coldStart: ColdStart;
  problem: string | null;
}

let testbed: Testbed | undefined;
let interrupted = false;
// Whether the note on negative release times has been printed, so that
// it is printed once.
let explainedEarlyRelease = false;

// Removes what the demo created when the signal arrives, prints a line
// once that is done, and exits with status. Before the testbed exists,
// the exit handlers of its parts remove what exists so far. After, the
// testbed's close() tears it down.
function removeOnSignal(signal: 'SIGINT' | 'SIGTERM', status: number): void {
  const removed = () => process.stdout.write('interrupted: everything the demo created is removed\n');

  process.once(signal, () => {
    interrupted = true;
    process.stdout.write(`\n${dim('interrupted: removing the namespaces, BPF programs, pins and processes ...')}\n`);
    if (!testbed) {
      // Exit handlers run in the order they were registered, and those of
      // the testbed's parts were registered at import, so this line comes
      // after their removals.
      process.once('exit', removed);
      process.exit(status);
    }

    // On SIGINT the testbed's own handler also calls close(), which returns
    // the same promise, and exits with 130 once it settles. This handler
    // was registered first, so its callbacks run before that exit.
    testbed
      .close()
      .then(removed, (err: Error) => process.stderr.write(`${red('interrupted: removing what the demo created failed:')} ${err.message}\n`))
      .finally(() => process.exit(status));
  });
}

async function main(): Promise<number> {
  removeOnSignal('SIGINT', 130);
  removeOnSignal('SIGTERM', 143);
  process.env.PGCONNECT_TIMEOUT = String(CLIENT_TIMEOUT_MS / 1000);

  const report = new Report(6);
  process.stdout.write(`${bold('zerohold demo')}: scale to zero, wake on the first packet, no proxy in the path\n`);

  report.begin('Starting a simulated cluster in network namespaces');
  report.line(dim('API server, 2 nodes, a stand-in for kube-proxy in nftables mode, kubelets, a zerohold agent per node (standalone mode: XDP on the uplink, tc on the pod veths)'));
  testbed = await Testbed.start({ nodes: 2, externalClients: 1, clientPodsPerNode: 1, probeIntervalMs: 50, agentLogLevel: 'info' });
  report.done();

  report.begin(`Deploying four workloads at zero replicas, each with a ScaleToZero (idleTimeout ${IDLE_TIMEOUT})`);
  const scaleToZero = { idleTimeout: IDLE_TIMEOUT, wakeTimeout: '60s' };
  const dir = testbed.workloadDir;
  const nginx = await testbed.deploy(nginxWorkload({ workDir: dir }), { scaleToZero, node: 'node-1' });
  const postgres = await testbed.deploy(postgresWorkload({ workDir: dir }), { scaleToZero, node: 'node-1' });
  const redis = await testbed.deploy(redisWorkload({ workDir: dir }), { scaleToZero, node: 'node-0' });
  const dns = await testbed.deploy(dnsWorkload({ workDir: dir }), { scaleToZero, node: 'node-1' });
  const workloads = [nginx, postgres, redis, dns];
  for (const workload of workloads) await testbed.waitForPhase(workload.key!, 'Cold', { gateClosed: true });
  report.done();
  report.line('zerohold status, as the CLI prints it on node-0:');
  report.block(await cliStatus(testbed), 2);

  report.begin('Cold starts: each client opens a connection to a Service with no pod');
  const external = testbed.externalClient(0);
  const podOnNode0 = testbed.clientPod('node-0');
  const scenarios: Scenario[] = [
    {
      title: 'nginx (HTTP)',
      workload: nginx,
      from: 'an external client',
      ns: external,
      command: 'curl',
      args: ['-sS', '--max-time', String(CLIENT_TIMEOUT_MS / 1000), '-o', '/dev/null', '-w', CURL_TIMING_FORMAT, `http://${nginx.clusterIPv4}/`],
      responseLabel: 'response',
      check: (r) => (/^200 /m.test(r.stdout) ? null : `expected HTTP 200, got ${r.stdout.trim()}`),
    },
    {
      title: 'PostgreSQL (StatefulSet, over 1 s to start)',
      workload: postgres,
      from: 'an external client',
      ns: external,
      command: 'psql',
      args: ['-h', postgres.clusterIPv4, '-U', 'postgres', '-Atc', 'select 6 * 7'],
      responseLabel: 'query answered: select 6 * 7 = 42',
      check: (r) => (r.stdout.trim() === '42' ? null : `expected 42, got ${r.stdout.trim()}`),
    },
    {
      title: 'Redis',
      workload: redis,
      from: 'a pod on node-0 (in-cluster path)',
      ns: podOnNode0,
      command: 'redis-cli',
      args: ['-h', redis.clusterIPv4, 'PING'],
      responseLabel: 'PING answered: PONG',
      check: (r) => (r.stdout.trim() === 'PONG' ? null : `expected PONG, got ${r.stdout.trim()}`),
    },
    {
      title: 'DNS over UDP (dnsmasq)',
      workload: dns,
      from: 'an external client',
      ns: external,
      command: 'dig',
      args: [`@${dns.clusterIPv4}`, '+short', '+time=30', '+tries=1', DNS_RECORD_NAME],
      responseLabel: `query answered: ${DNS_RECORD_NAME} A ${DNS_RECORD_ADDRESS}`,
      check: (r) => (r.stdout.trim() === DNS_RECORD_ADDRESS ? null : `expected ${DNS_RECORD_ADDRESS}, got ${r.stdout.trim()}`),
    },
  ];

  const outcomes: Outcome[] = [];
  for (const scenario of scenarios) outcomes.push(await runColdStart(testbed, report, scenario));
  report.done();

  report.begin(`Idle scale-down: no traffic for ${IDLE_TIMEOUT}, the leader closes every node's gate, then scales to 0`);
  const transitions = (event: TestbedEvent) => {
    if (event.source !== 'agent' || event.node !== 'node-0' || !/^(Warm|Idle|ScalingDown) -> /.test(event.type)) return;
    report.line(`${dim(new Date(event.unixMs).toISOString().slice(11, 23))}  ${event.fields.workload}: ${event.type}`, 2);
  };
  testbed.events.on('event', transitions);
  for (const workload of workloads) await testbed.waitForPhase(workload.key!, 'Cold', { gateClosed: true, timeoutMs: 90_000 });
  testbed.events.off('event', transitions);
  for (const workload of workloads) {
    const replicas = await testbed.replicas(workload);
    if (replicas !== 0) throw new Error(`${workload.name} still has ${replicas} replicas after the scale-down`);
  }
  report.done('every workload is at 0 replicas');
  report.block(await cliStatus(testbed), 2);

  report.begin('A second wake after the scale-down');
  outcomes.push(await runColdStart(testbed, report, { ...scenarios[0]!, title: 'nginx again' }));
  report.done();

  report.begin('Summary');
  printSummary(report, outcomes);
  const failed = outcomes.filter((o) => o.problem !== null);
  return failed.length === 0 ? 0 : 1;
}

async function runColdStart(testbed: Testbed, report: Report, scenario: Scenario): Promise<Outcome> {
  report.line(`${bold(scenario.title)}: ${scenario.command} ${scenario.args.map((a) => (a === CURL_TIMING_FORMAT ? "'<timings>'" : a)).join(' ')}`);
  report.line(dim(`from ${scenario.from}`), 2);

  const result = await testbed.run(scenario.ns, scenario.command, scenario.args, { timeoutMs: CLIENT_TIMEOUT_MS + 5000 });
  // The agent's release log line and the proxy's sync may land a moment
  // after the client is done.
  await new Promise((resolve) => setTimeout(resolve, 100));
  const coldStart = collectColdStart(testbed, scenario.workload, result, scenario.responseLabel);
  report.timeline(coldStart);

  const problem = result.ok ? scenario.check(result) : `${scenario.command} exited ${result.code ?? result.signal}: ${result.stderr.trim()}`;
  if (problem) report.line(red(`FAILED: ${problem}`), 2);
  else report.line(`pod Ready to ${scenario.command === 'curl' ? 'connection' : 'answer'}: ${bold(formatGap(coldStart.readyUnixMs, coldStart.connectedUnixMs))}, of which zerohold's release after kube-proxy's report: ${bold(formatGap(coldStart.programmedUnixMs, coldStart.releasedUnixMs))}`, 2);

  const releaseGapMs = coldStart.programmedUnixMs === null || coldStart.releasedUnixMs === null ? null : coldStart.releasedUnixMs - coldStart.programmedUnixMs;
  if (!problem && releaseGapMs !== null && releaseGapMs < 0 && !explainedEarlyRelease) {
    explainedEarlyRelease = true;
    report.line(dim("negative: the agent follows the kernel's nftables commit, which comes before kube-proxy's stand-in reports that its nft transaction returned"), 2);
  }
  return { scenario, result, coldStart, problem };
}

function printSummary(report: Report, outcomes: Outcome[]): void {
  const rows = [['workload', 'client', 'result', 'held -> connected', 'Ready -> kube-proxy', 'kube-proxy -> released', 'released -> connected']];
  for (const { scenario, result, coldStart, problem } of outcomes) {
    const first = coldStart.steps[0]?.unixMs ?? result.startedUnixMs;
    rows.push([
      scenario.title.split(' (')[0]!,
      scenario.command,
      problem ? 'FAILED' : 'ok',
      formatGap(first, coldStart.connectedUnixMs),
      formatGap(coldStart.readyUnixMs, coldStart.programmedUnixMs),
      formatGap(coldStart.programmedUnixMs, coldStart.releasedUnixMs),
      formatGap(coldStart.releasedUnixMs, coldStart.connectedUnixMs),
    ]);
  }
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  for (const [i, row] of rows.entries()) {
    const text = row.map((cell, column) => (column >= 3 ? cell.padStart(widths[column]!) : cell.padEnd(widths[column]!))).join('  ');
    report.line(i === 0 ? bold(text) : text);
  }
  report.line(dim('held -> connected: first held packet to the connection (or, for psql, redis-cli and dig, to the answer).'));
  report.line(dim('Ready -> kube-proxy: the cluster propagating the new endpoint, which every client waits for.'));
  report.line(dim('kube-proxy -> released: zerohold noticing the rule and re-injecting. The stand-in reports its sync'));
  report.line(dim('when nft returns, after the rule is live, so this can be negative. Without zerohold, the client'));
  report.line(dim('would wait for its next SYN retransmission (1 s, 3 s, 7 s ... after the first SYN) instead.'));
}

async function cliStatus(testbed: Testbed): Promise<string> {
  const { stdout } = await execFileAsync(process.execPath, [path.join(repoRoot, 'dist/src/cli/zerohold.js'), 'status', '--socket', testbed.agent('node-0').socketPath]);
  return stdout;
}

const started = performance.now();
main()
  .then(async (code) => {
    process.stdout.write(`\n${dim('removing the namespaces, BPF programs, pins and processes ...')}\n`);
    await testbed?.close();
    process.stdout.write(`${code === 0 ? 'demo finished' : red('demo finished with failures')} in ${((performance.now() - started) / 1000).toFixed(0)} s\n`);
    process.exit(code);
  })
  .catch(async (err: Error) => {
    // Steps fail while the testbed goes away under them; that is no news.
    if (interrupted) return;
    process.stderr.write(`\n${red('demo failed:')} ${err.stack ?? err.message}\n`);
    await testbed?.close().catch(() => undefined);
    process.exit(1);
  });
