import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ConfigError, loadConfig, parseConfig } from '../../src/agent/config.js';
import { formatDuration, parseDuration } from '../../src/agent/duration.js';

const MINIMAL = `
interfaces:
  - name: eth0
`;

test('config fills defaults', () => {
  const config = parseConfig(MINIMAL);

  assert.equal(config.mode, 'standalone');
  assert.deepEqual(config.interfaces, [{ name: 'eth0', hook: 'xdp', xdpMode: 'auto' }]);
  assert.equal(config.bpf.pinDir, '/sys/fs/bpf/zerohold');
  assert.equal(config.bpf.heldRingBytes, 8 << 20);
  assert.equal(config.limits.wakeInterval, 1000);
  assert.equal(config.leaderElection.leaseDuration, 15_000);
  assert.equal(config.kubernetes.namespace, 'zerohold-system');
  assert.equal(config.metrics.port, 9464);
  assert.equal(config.release.kubeProxy, 'auto');
  assert.equal(config.release.timeout, 10_000);
});

test('config reads every section', () => {
  const config = parseConfig(`
nodeName: node-1
mode: standalone
netns: /run/netns/node1
interfaces:
  - { name: veth1, hook: tc }
bpf: { heldRingBytes: 16Mi, indexBuckets: 1024, maxServices: 64 }
limits: { heldFlowsPerClient: 8, wakeInterval: 250ms }
idle: { reportInterval: 1m30s }
release: { kubeProxy: nftables, timeout: 2500ms }
`);

  assert.equal(config.nodeName, 'node-1');
  assert.equal(config.netns, '/run/netns/node1');
  assert.equal(config.interfaces[0]!.hook, 'tc');
  assert.equal(config.bpf.heldRingBytes, 16 << 20);
  assert.equal(config.bpf.indexBuckets, 1024);
  assert.equal(config.limits.heldFlowsPerClient, 8);
  assert.equal(config.limits.wakeInterval, 250);
  assert.equal(config.idle.reportInterval, 90_000);
  assert.equal(config.release.kubeProxy, 'nftables');
  assert.equal(config.release.timeout, 2500);
});

function problemsOf(text: string): string[] {
  try {
    parseConfig(text, 'agent.yaml');
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${err}`);
    assert.match(err.message, /^invalid agent configuration in agent\.yaml:/);
    return err.problems;
  }
  assert.fail('configuration was accepted');
}

test('config names field and value', () => {
  const problems = problemsOf(`
interfaces:
  - { name: eth0, hook: xpd }
bpf: { indexBuckets: 1000, heldRingBytes: 8MB }
limits: { wakeInterval: 1 second }
`);

  assert.equal(problems.length, 4, problems.join('\n'));
  assert.match(problems.find((p) => p.startsWith('interfaces[0].hook'))!, /"xdp".*"tc".*got "xpd"/);
  assert.match(problems.find((p) => p.startsWith('bpf.indexBuckets'))!, /power of two.*got 1000/);
  assert.match(problems.find((p) => p.startsWith('bpf.heldRingBytes'))!, /"8Mi".*got "8MB"/);
  assert.match(problems.find((p) => p.startsWith('limits.wakeInterval'))!, /Go duration.*got "1 second"/);
});

test('config names release problems', () => {
  const problems = problemsOf(`${MINIMAL}release: { kubeProxy: ipvs, timeout: 10 seconds }\n`);

  assert.equal(problems.length, 2, problems.join('\n'));
  assert.match(problems.find((p) => p.startsWith('release.kubeProxy'))!, /"auto".*"nftables".*"iptables".*"none".*got "ipvs"/);
  assert.match(problems.find((p) => p.startsWith('release.timeout'))!, /Go duration.*got "10 seconds"/);
});

test('config rejects unknown fields', () => {
  const [problem] = problemsOf(`${MINIMAL}\nintefaces: []\n`);
  assert.equal(problem, 'intefaces: unknown field, check its spelling or remove it');
});

test('config needs interfaces standalone', () => {
  const [problem] = problemsOf('mode: standalone\n');
  assert.match(problem!, /^interfaces: missing, expected at least one interface/);
});

test('config fills chained defaults', () => {
  const config = parseConfig('mode: chained\n');

  assert.equal(config.chained.hostPinDir, '/sys/fs/bpf/tc/globals');
  assert.equal(config.chained.reinsertInterval, 1000);
  assert.equal(config.cilium.bpfPinDir, '/sys/fs/bpf/tc/globals');
  assert.equal(config.cilium.apiSocket, '/var/run/cilium/cilium.sock');
});

test('config reads chained sections', () => {
  const config = parseConfig(`
mode: chained
chained: { hostPinDir: /sys/fs/bpf/host, reinsertInterval: 250ms }
cilium: { bpfPinDir: /sys/fs/bpf/cilium, apiSocket: /run/cilium.sock }
`);

  assert.equal(config.chained.hostPinDir, '/sys/fs/bpf/host');
  assert.equal(config.chained.reinsertInterval, 250);
  assert.equal(config.cilium.bpfPinDir, '/sys/fs/bpf/cilium');
  assert.equal(config.cilium.apiSocket, '/run/cilium.sock');
});

test('config rejects interfaces chained', () => {
  const [problem] = problemsOf(`mode: chained\n${MINIMAL}`);
  assert.match(problem!, /^interfaces: not used in chained mode/);
});

test('config rejects kube-proxy check chained', () => {
  const problems = problemsOf('mode: chained\nrelease: { kubeProxy: nftables }\n');
  assert.deepEqual(problems, [
    'release.kubeProxy: "nftables" is not used in chained mode, where the agent checks Cilium\'s datapath for a backend instead; remove it or set it to auto or none',
  ]);
});

test('config rejects kube-proxy check signal', () => {
  const problems = problemsOf('mode: signal\nrelease: { kubeProxy: nftables }\n');
  assert.deepEqual(problems, ['release.kubeProxy: "nftables" is not used in signal mode, where nothing is held to release; remove it or set it to auto or none']);
  assert.deepEqual(problemsOf('mode: chained\nrelease: { kubeProxy: iptables }\n'), [
    'release.kubeProxy: "iptables" is not used in chained mode, where the agent checks Cilium\'s datapath for a backend instead; remove it or set it to auto or none',
  ]);
});

test('config accepts auto kube-proxy in every mode', () => {
  // Chained and signal modes ignore it, so that the default fits them.
  assert.equal(parseConfig('mode: chained\nrelease: { kubeProxy: auto }\n').release.kubeProxy, 'auto');
  assert.equal(parseConfig('mode: signal\nrelease: { kubeProxy: auto }\n').release.kubeProxy, 'auto');
});

test('config rejects hand-over signal', () => {
  const problems = problemsOf('mode: signal\nshutdown: { handover: 30s }\n');
  assert.deepEqual(problems, ['shutdown.handover: not used in signal mode, where zerohold attaches no programs to hand over; remove it or set it to 0s']);
});

test('config bounds failOpenAfter', () => {
  const [problem] = problemsOf(`${MINIMAL}liveness: { failOpenAfter: 500ms }\n`);
  assert.match(problem!, /^liveness\.failOpenAfter: expected 0s \(no deadline\) or at least 1s/);
  assert.equal(parseConfig(`${MINIMAL}liveness: { failOpenAfter: 0s }\n`).liveness.failOpenAfter, 0);
  assert.equal(parseConfig(MINIMAL).liveness.failOpenAfter, 10_000);
  assert.equal(parseConfig(MINIMAL).shutdown.handover, 0);
});

test('config accepts kube-proxy none chained', () => {
  assert.equal(parseConfig('mode: chained\nrelease: { kubeProxy: none }\n').release.kubeProxy, 'none');
});

test('config names chained problems', () => {
  const problems = problemsOf('mode: chained\nchained: { hostPinDir: /tmp/globals, reinsertInterval: 0s }\ncilium: { apiSocket: cilium.sock }\n');

  assert.equal(problems.length, 3, problems.join('\n'));
  assert.match(problems.find((p) => p.startsWith('chained.hostPinDir'))!, /\/sys\/fs\/bpf\/.*got "\/tmp\/globals"/);
  assert.match(problems.find((p) => p.startsWith('chained.reinsertInterval'))!, /above 0.*got "0s"/);
  assert.match(problems.find((p) => p.startsWith('cilium.apiSocket'))!, /got "cilium.sock"/);
});

test('config orders leader election times', () => {
  const problems = problemsOf(`${MINIMAL}leaderElection: { leaseDuration: 10s, renewDeadline: 15s, retryPeriod: 20s }\n`);

  assert.equal(problems.length, 2, problems.join('\n'));
  assert.equal(problems[0], 'leaderElection.renewDeadline: expected less than leaderElection.leaseDuration (got 15s and 10s)');
  assert.equal(problems[1], 'leaderElection.retryPeriod: expected above 0 and less than leaderElection.renewDeadline (got 20s and 15s)');
});

test('config rejects zero retry period', () => {
  const [problem] = problemsOf(`${MINIMAL}leaderElection: { retryPeriod: 0s }\n`);
  assert.match(problem!, /^leaderElection.retryPeriod: expected above 0 .*got 0ms and 10s/);
});

// The agent's duration fields.
const DURATION_FIELDS = [
  'limits.wakeInterval',
  'chained.reinsertInterval',
  'release.timeout',
  'idle.reportInterval',
  'leaderElection.leaseDuration',
  'leaderElection.renewDeadline',
  'leaderElection.retryPeriod',
];

test('config bounds every duration', () => {
  for (const field of DURATION_FIELDS) {
    const [section, key] = field.split('.');
    const problems = problemsOf(`${MINIMAL}${section}: { ${key}: 596h31m23.648s }\n`);
    assert.deepEqual(problems, [`${field}: expected at most 596h31m23.647s (2^31-1 ms), the longest delay of a Node.js timer (got "596h31m23.648s")`]);
  }
});

test('config accepts longest timer delay', () => {
  const config = parseConfig(`${MINIMAL}release: { timeout: 596h31m23.647s }\nleaderElection: { leaseDuration: 596h31m23.647s }\n`);
  assert.equal(config.release.timeout, 2 ** 31 - 1);
  assert.equal(config.leaderElection.leaseDuration, 2 ** 31 - 1);
});

test('config rejects 1000h release timeout', () => {
  const problems = problemsOf(`${MINIMAL}release: { timeout: 1000h }\n`);
  assert.deepEqual(problems, ['release.timeout: expected at most 596h31m23.647s (2^31-1 ms), the longest delay of a Node.js timer (got "1000h")']);
});

test('config rejects zero release timeout', () => {
  const problems = problemsOf(`${MINIMAL}release: { timeout: 0s }\n`);
  assert.deepEqual(problems, ['release.timeout: expected a duration above 0 (got "0s")']);
});

test('config needs 1s report interval', () => {
  for (const value of ['0s', '999ms']) {
    const problems = problemsOf(`${MINIMAL}idle: { reportInterval: ${value} }\n`);
    assert.deepEqual(problems, [`idle.reportInterval: expected at least 1s, because a node whose report is three intervals old counts as gone (got "${value}")`]);
  }
  assert.equal(parseConfig(`${MINIMAL}idle: { reportInterval: 1s }\n`).idle.reportInterval, 1000);
});

test('config allows zero wake interval', () => {
  assert.equal(parseConfig(`${MINIMAL}limits: { wakeInterval: 0s }\n`).limits.wakeInterval, 0);
});

test('config names number durations', () => {
  const problems = problemsOf(`${MINIMAL}limits: { wakeInterval: 1 }\n`);
  assert.deepEqual(problems, ['limits.wakeInterval: expected a Go duration with a unit, such as "30s", "5m" or "1h30m" (got 1)']);
});

test('config bounds ring sizes', () => {
  for (const field of ['heldRingBytes', 'wakeRingBytes']) {
    for (const value of ['"0"', '0', '4095']) {
      const problems = problemsOf(`${MINIMAL}bpf: { ${field}: ${value} }\n`);
      assert.deepEqual(problems, [`bpf.${field}: expected at least 4096 bytes, the smallest page size, such as "256Ki" (got ${value})`]);
    }
    for (const value of ['"3Gi"', '2147483649']) {
      const problems = problemsOf(`${MINIMAL}bpf: { ${field}: ${value} }\n`);
      assert.deepEqual(problems, [`bpf.${field}: expected at most 2Gi, the largest power of two that fits a BPF map's 32-bit max_entries (got ${value})`]);
    }
  }
});

test('config accepts ring size limits', () => {
  const config = parseConfig(`${MINIMAL}bpf: { heldRingBytes: 2Gi, wakeRingBytes: 4096 }\n`);
  assert.equal(config.bpf.heldRingBytes, 2 ** 31);
  assert.equal(config.bpf.wakeRingBytes, 4096);
});

test('config bounds map sizes', () => {
  for (const field of ['maxServices', 'maxFrontends']) {
    for (const value of ['0', '4294967296', '1000000000000']) {
      const problems = problemsOf(`${MINIMAL}bpf: { ${field}: ${value} }\n`);
      assert.deepEqual(problems, [`bpf.${field}: expected an integer from 1 to 4294967295, the range of a BPF map's max_entries (got ${value})`]);
    }
  }
  for (const value of ['4294967296', '8589934592']) {
    const problems = problemsOf(`${MINIMAL}bpf: { indexBuckets: ${value} }\n`);
    assert.deepEqual(problems, [`bpf.indexBuckets: expected a power of two from 1 to 2147483648 (2^31), the largest that fits a BPF map's 32-bit max_entries (got ${value})`]);
  }
});

test('config accepts map size limits', () => {
  const config = parseConfig(`${MINIMAL}bpf: { maxServices: 4294967295, maxFrontends: 1, indexBuckets: 2147483648 }\n`);
  assert.equal(config.bpf.maxServices, 4294967295);
  assert.equal(config.bpf.maxFrontends, 1);
  assert.equal(config.bpf.indexBuckets, 2 ** 31);
});

test('config accepts interface patterns', () => {
  const config = parseConfig('interfaces:\n  - { name: eth0 }\n  - { name: veth+, hook: tc }\n  - { name: "+" }\n');
  assert.deepEqual(
    config.interfaces.map((iface) => [iface.name, iface.hook]),
    [
      ['eth0', 'xdp'],
      ['veth+', 'tc'],
      ['+', 'xdp'],
    ],
  );
});

test('config rejects repeated interface', () => {
  const problems = problemsOf('interfaces:\n  - { name: veth+ }\n  - { name: eth0 }\n  - { name: veth+, hook: tc }\n');
  assert.deepEqual(problems, ['interfaces[2].name: "veth+" is listed twice; keep one entry']);
});

test('config errors name YAML forms', () => {
  const cases: [string, string][] = [
    ['hubble: {relay: {address: "relay:80", tls: {}}}', 'hubble.relay.tls.ca: missing, expected a string (got missing)'],
    ['limits: {heldFlowsPerClient: 1.5}', 'limits.heldFlowsPerClient: expected an integer (got 1.5)'],
    ['limits: {heldFlowsTotal: 0}', 'limits.heldFlowsTotal: expected a number above 0 (got 0)'],
    ['interfaces: [{name: ""}]', 'interfaces[0].name: expected a non-empty string (got "")'],
    ['bpf: {pinDir: /tmp/zerohold}', 'bpf.pinDir: expected a path under /sys/fs/bpf/ (got "/tmp/zerohold")'],
    ['hubble: {activity: "yes"}', 'hubble.activity: expected true or false (got "yes")'],
    ['interfaces: eth0', 'interfaces: expected a list (got "eth0")'],
    ['interfaces: [{name: "eth 0"}]', 'interfaces[0].name: expected an interface name without "/", ":" or whitespace (got "eth 0")'],
    ['interfaces: [{name: "ve+th"}]', 'interfaces[0].name: expected "+" only at the end, where it matches every interface whose name starts with what precedes it (got "ve+th")'],
    ['metrics: {port: 70000}', 'metrics.port: expected at most 65535 (got 70000)'],
    ['metrics: {port: -1}', 'metrics.port: expected at least 0 (got -1)'],
    ['limits: {heldFlowsTotal: 1e300}', 'limits.heldFlowsTotal: expected at most 9007199254740991 (got 1e+300)'],
    ['mode: proxy', 'mode: expected one of "standalone", "chained", "signal" (got "proxy")'],
  ];
  for (const [text, problem] of cases) {
    const document = text.startsWith('mode:') ? text : `mode: standalone\n${text}`;
    const problems = problemsOf(document);
    assert.ok(problems.includes(problem), `${text}: ${problems.join(' | ')}`);
  }
});

test('missing config file names the fix', async () => {
  await assert.rejects(loadConfig('/nonexistent/zerohold/agent.yaml'), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.match(err.problems[0]!, /^cannot read the file: ENOENT: no such file or directory, open '\/nonexistent\/zerohold\/agent\.yaml'; pass --config with the path of the agent configuration$/);
    return true;
  });
});

test('config rejects broken YAML', () => {
  const [problem] = problemsOf('interfaces: [\n');
  assert.match(problem!, /^not valid YAML/);
});

test('duration parses Go forms', () => {
  assert.equal(parseDuration('1h30m'), 5_400_000);
  assert.equal(parseDuration('1.5s'), 1500);
  assert.equal(parseDuration('250ms'), 250);
  assert.equal(parseDuration('10'), null);
  assert.equal(parseDuration('-1s'), null);
  assert.equal(parseDuration(''), null);
  assert.equal(formatDuration(5_400_000), '1h30m');
  assert.equal(formatDuration(250), '250ms');
  assert.equal(formatDuration(1400), '1.4s');
  assert.equal(formatDuration(999.6), '1s');
  assert.equal(formatDuration(61_500), '1m1.5s');
  assert.equal(formatDuration(3_600_000), '1h');
});
