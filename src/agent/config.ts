// The node agent's configuration file: YAML, parsed with the yaml package
// and validated with zod. Every error names the field path, the value and
// the expected form, so a typo in a DaemonSet's ConfigMap is fixable from
// the log line alone.

import { readFile } from 'node:fs/promises';

import { parse as parseYaml } from 'yaml';
import { z } from 'zod';

import { formatDuration, parseDuration } from './duration.js';

const DURATION_FORM = 'expected a Go duration with a unit, such as "30s", "5m" or "1h30m"';

// Node.js fires a timer whose delay does not fit in an int32 after 1 ms,
// with a TimeoutOverflowWarning. The bound applies to every duration, also
// to those that never become a timer, so that all of them share one range.
const MAX_TIMER_MS = 2 ** 31 - 1;

interface LowerBound {
  accepts: (ms: number) => boolean;
  message: string;
}

const ABOVE_ZERO: LowerBound = { accepts: (ms) => ms > 0, message: 'expected a duration above 0' };

// A Go duration in milliseconds, at most MAX_TIMER_MS, and 0 or more
// unless lowerBound sets another minimum.
const duration = (fallback: string, lowerBound?: LowerBound) =>
  z
    .string({ error: DURATION_FORM })
    .default(fallback)
    .refine((text) => parseDuration(text) !== null, { message: DURATION_FORM })
    .transform((text) => parseDuration(text)!)
    .refine((ms) => lowerBound?.accepts(ms) ?? true, { message: lowerBound?.message })
    .refine((ms) => ms <= MAX_TIMER_MS, { message: 'expected at most 596h31m23.647s (2^31-1 ms), the longest delay of a Node.js timer' });

const BINARY_SUFFIX: Record<string, number> = { '': 1, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3 };
const BYTES_FORM = 'expected bytes as an integer or with Ki, Mi or Gi, such as "8Mi"';

// Byte counts as a number or a Kubernetes binary quantity ("8Mi").
const bytes = (fallback: number) =>
  z
    .union([z.number({ error: BYTES_FORM }).int({ error: BYTES_FORM }), z.string({ error: BYTES_FORM }).regex(/^\d+(Ki|Mi|Gi)?$/, BYTES_FORM)], { error: BYTES_FORM })
    .default(fallback)
    .transform((value) => {
      if (typeof value === 'number') return value;
      const [, amount, suffix] = /^(\d+)(Ki|Mi|Gi)?$/.exec(value)!;
      return Number(amount) * BINARY_SUFFIX[suffix ?? '']!;
    });

// The size of a BPF ring buffer. The kernel needs a power of two of pages,
// and libbpf rounds any other size up to one. 4096 is the smallest page
// size, and 0 fails map creation. The largest is 2^31 because max_entries
// has 32 bits, so a larger size has no power of two to round up to.
const ringBytes = (fallback: number) =>
  bytes(fallback)
    .refine((n) => n >= 4096, { message: 'expected at least 4096 bytes, the smallest page size, such as "256Ki"' })
    .refine((n) => n <= 2 ** 31, { message: "expected at most 2Gi, the largest power of two that fits a BPF map's 32-bit max_entries" });

const MAP_ENTRIES_RANGE = "expected an integer from 1 to 4294967295, the range of a BPF map's max_entries";

// The max_entries of a BPF map. The kernel rejects a size in this range
// that it cannot allocate, and libbpf's error then names the map.
const mapEntries = (fallback: number) =>
  z
    .number({ error: MAP_ENTRIES_RANGE })
    .default(fallback)
    .refine((n) => Number.isInteger(n) && n >= 1 && n <= 2 ** 32 - 1, { message: MAP_ENTRIES_RANGE });

const POWER_OF_TWO_RANGE = "expected a power of two from 1 to 2147483648 (2^31), the largest that fits a BPF map's 32-bit max_entries";

// Bitwise operators convert n to int32, so the range check comes first.
// 2^31 becomes -2^31 there, which the test still reads as a power of two.
const powerOfTwo = (fallback: number) =>
  z
    .number({ error: POWER_OF_TWO_RANGE })
    .default(fallback)
    .refine((n) => Number.isInteger(n) && n >= 1 && n <= 2 ** 31 && (n & (n - 1)) === 0, { message: POWER_OF_TWO_RANGE });

// An interface name, or with a trailing "+" every name that starts with
// what precedes it, as in Cilium's devices and iptables' -i. Linux limits
// names to 15 bytes and rejects "/", ":" and whitespace in them.
const interfaceName = z
  .string()
  .min(1)
  .max(15, 'expected an interface name of at most 15 characters')
  .refine((name) => !/[/:\s]/.test(name), { message: 'expected an interface name without "/", ":" or whitespace' })
  .refine((name) => !name.slice(0, -1).includes('+'), { message: 'expected "+" only at the end, where it matches every interface whose name starts with what precedes it' });

const interfaceSchema = z.strictObject({
  name: interfaceName,
  hook: z.enum(['xdp', 'tc']).default('xdp'),
  xdpMode: z.enum(['native', 'generic', 'auto']).default('auto'),
});

export const agentConfigSchema = z.strictObject({
  // Defaults to the NODE_NAME environment variable, set from the downward
  // API in the DaemonSet.
  nodeName: z.string().min(1).optional(),
  mode: z.enum(['standalone', 'chained', 'signal']).default('standalone'),
  // An interface gets the hook of the entry with its exact name, or else
  // of the first pattern that matches it.
  interfaces: z.array(interfaceSchema).default([]),
  // Network namespace of the interfaces, such as /run/netns/node1. Unset
  // in a cluster, where the agent runs with hostNetwork.
  netns: z.string().startsWith('/').optional(),
  kubernetes: z
    .strictObject({
      // In-cluster configuration when unset.
      kubeconfig: z.string().min(1).optional(),
      // Namespace of the agent's Leases.
      namespace: z.string().min(1).default('zerohold-system'),
    })
    .prefault({}),
  bpf: z
    .strictObject({
      objectPath: z.string().min(1).optional(),
      pinDir: z.string().startsWith('/sys/fs/bpf/').default('/sys/fs/bpf/zerohold'),
      maxServices: mapEntries(8192),
      maxFrontends: mapEntries(65536),
      indexBuckets: powerOfTwo(65536),
      heldRingBytes: ringBytes(8 << 20),
      wakeRingBytes: ringBytes(256 << 10),
    })
    .prefault({}),
  limits: z
    .strictObject({
      // Flows held on this node for all workloads together.
      heldFlowsTotal: z.number().int().positive().default(65536),
      // Defaults for a workload whose heldFlowLimits leave them out: flows
      // held per service id, and per client address and service id.
      heldFlowsPerService: z.number().int().positive().default(4096),
      heldFlowsPerClient: z.number().int().positive().default(256),
      // At most one wake event per Service in this interval. 0 signals
      // every flow opener.
      wakeInterval: duration('1s'),
    })
    .prefault({}),
  // Chained mode: a host datapath such as Cilium's tail-calls zerohold for
  // Services without backends.
  chained: z
    .strictObject({
      // bpffs directory where the host pins zh_chain_xdp, zh_chain_tc,
      // zh_chain_meta and zh_chain_svcs.
      hostPinDir: z.string().startsWith('/sys/fs/bpf/').default('/sys/fs/bpf/tc/globals'),
      // How often the agent checks that its programs are still in the
      // host's prog arrays, and inserts them again after a host reload.
      reinsertInterval: duration('1s', ABOVE_ZERO),
    })
    .prefault({}),
  // Sources of Cilium's Services in chained mode.
  cilium: z
    .strictObject({
      // bpffs directory of Cilium's pinned service maps
      // (cilium_lb4_services_v2 and the others).
      bpfPinDir: z.string().startsWith('/sys/fs/bpf/').default('/sys/fs/bpf/tc/globals'),
      // Unix socket of the Cilium agent's REST API, read when the pinned
      // maps are unavailable.
      apiSocket: z.string().startsWith('/').default('/var/run/cilium/cilium.sock'),
    })
    .prefault({}),
  // Hubble, Cilium's flow observer. Its flows are the activity source in
  // chained and signal modes, and the wake signal in signal mode.
  hubble: z
    .strictObject({
      // The node's Hubble socket, read unless relay is set.
      socket: z.string().startsWith('/').default('/var/run/cilium/hubble.sock'),
      // Hubble Relay instead of the node's socket, to see every node's flows.
      relay: z
        .strictObject({
          // host:port
          address: z.string().regex(/^[^\s:]+:\d+$|^\[[0-9a-fA-F:]+\]:\d+$/, 'expected host:port, such as "hubble-relay.kube-system.svc:80"'),
          tls: z
            .strictObject({
              ca: z.string().startsWith('/'),
              cert: z.string().startsWith('/').optional(),
              key: z.string().startsWith('/').optional(),
              serverName: z.string().min(1).optional(),
            })
            .optional(),
        })
        .optional(),
      // HTTP/2 keepalive pings to Hubble or Relay, which end a call on a
      // connection that went half-open. Cilium's gRPC servers reply to
      // pings sent more often than every 5 minutes with a GOAWAY by
      // default.
      keepalive: z
        .strictObject({
          interval: duration('5m', ABOVE_ZERO),
          timeout: duration('20s', ABOVE_ZERO),
        })
        .prefault({}),
      // Also count Hubble flows as activity in standalone mode, next to the
      // datapath counters. Chained and signal modes always do.
      activity: z.boolean().default(false),
      // The agent's own observer endpoint, which streams held, released and
      // expired flows for `hubble observe --server unix://<socket>`.
      observerSocket: z.string().startsWith('/').default('/run/zerohold/hubble.sock'),
    })
    .prefault({}),
  metrics: z
    .strictObject({
      host: z.string().default('0.0.0.0'),
      port: z.number().int().min(0).max(65535).default(9464),
    })
    .prefault({}),
  api: z
    .strictObject({
      // Unix socket of the local API that the zerohold CLI reads.
      socket: z.string().startsWith('/').default('/run/zerohold/agent.sock'),
    })
    .prefault({}),
  release: z
    .strictObject({
      // The node load balancer that must have programmed a Service before
      // held packets are re-injected. 'nftables' waits until kube-proxy's
      // nftables mode has a service-ips or service-nodeports element for
      // each frontend, so the first SYN meets the DNAT. 'iptables' waits
      // for kube-proxy's iptables rules in the same way. 'auto' finds the
      // mode from what kube-proxy wrote on the node (kube-proxy-auto.ts),
      // and releases on the Ready endpoint alone until it finds one.
      // 'none' releases on the Ready endpoint alone. Chained and signal
      // modes ignore 'auto'.
      // TODO: kube-proxy in IPVS mode has no check; its virtual servers would
      // have to be read through ipvsadm or IPVS netlink.
      kubeProxy: z.enum(['auto', 'nftables', 'iptables', 'none']).default('auto'),
      // Maximum wait for that programming. After it the packets are
      // re-injected anyway, and the client retransmits if they miss.
      timeout: duration('10s', ABOVE_ZERO),
      // Before a release, check the endpoints that held flows go to and
      // wait while they do not listen (TCP: refuse connections; UDP: no
      // socket bound): a pod without a readiness probe turns Ready before
      // its server listens.
      checkListening: z.boolean().default(true),
      // 'reinject' sends the held packets on at release. 'drop' discards
      // them, so clients connect at their next retransmission: the
      // behaviour of earlier proxyless designs, kept for benchmarks.
      heldPackets: z.enum(['reinject', 'drop']).default('reinject'),
    })
    .prefault({}),
  idle: z
    .strictObject({
      // How often this node publishes its activity for the leader. A node
      // whose report is three intervals old counts as gone, so at 0 the
      // leader would scale down without the other nodes' activity. Reports
      // go out on the controller's 1 s tick, hence the minimum of 1s.
      reportInterval: duration('10s', { accepts: (ms) => ms >= 1000, message: 'expected at least 1s, because a node whose report is three intervals old counts as gone' }),
    })
    .prefault({}),
  liveness: z
    .strictObject({
      // The agent renews a deadline in the datapath while it runs. Past
      // it, the programs pass flow openers instead of holding them for
      // no one: after a crash or a hang, or at the end of a hand-over.
      // 0 turns the deadline off. Below 1 s, a garbage collection pause
      // could pass it.
      failOpenAfter: duration('10s', { accepts: (ms) => ms === 0 || ms >= 1000, message: 'expected 0s (no deadline) or at least 1s, because a shorter deadline passes during a pause of the agent' }),
    })
    .prefault({}),
  shutdown: z
    .strictObject({
      // On SIGTERM: 0 detaches the programs. Longer, the programs stay
      // attached and keep holding for this long, for the next agent of a
      // rolling update to take over, and then pass.
      handover: duration('0s'),
    })
    .prefault({}),
  leaderElection: z
    .strictObject({
      leaseName: z.string().min(1).default('zerohold-leader'),
      leaseDuration: duration('15s'),
      renewDeadline: duration('10s'),
      retryPeriod: duration('2s'),
    })
    .prefault({}),
});

export type AgentConfig = z.output<typeof agentConfigSchema>;

export class ConfigError extends Error {
  constructor(
    readonly source: string,
    readonly problems: string[],
  ) {
    super(`invalid agent configuration in ${source}:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

function describeValue(root: unknown, path: PropertyKey[]): string {
  let value: unknown = root;
  for (const key of path) {
    if (value === null || typeof value !== 'object') return 'missing';
    value = (value as Record<PropertyKey, unknown>)[key];
  }
  return value === undefined ? 'missing' : JSON.stringify(value);
}

function fieldPath(path: PropertyKey[]): string {
  let text = '';
  for (const key of path) {
    if (typeof key === 'number') text += `[${key}]`;
    else text += text ? `.${String(key)}` : String(key);
  }
  return text;
}

// Problems that no single field shows: the interface list against the
// mode, and settings that only work together.
function crossFieldProblems(config: AgentConfig): string[] {
  const problems: string[] = [];
  if (config.mode === 'standalone' && config.interfaces.length === 0) {
    problems.push('interfaces: missing, expected at least one interface to attach to in standalone mode');
  }
  if (config.mode === 'chained' && config.interfaces.length > 0) {
    problems.push('interfaces: not used in chained mode, where the host datapath calls zerohold; remove the list');
  }
  if (config.mode === 'signal' && config.interfaces.length > 0) {
    problems.push('interfaces: not used in signal mode, where Hubble drop events wake workloads; remove the list');
  }
  const seen = new Set<string>();
  for (const [index, { name }] of config.interfaces.entries()) {
    if (seen.has(name)) problems.push(`interfaces[${index}].name: "${name}" is listed twice; keep one entry`);
    seen.add(name);
  }

  // The agent follows kube-proxy's nftables rules in standalone mode only.
  const kubeProxy = config.release.kubeProxy;
  const kubeProxyMode = kubeProxy === 'nftables' || kubeProxy === 'iptables';
  if (config.mode === 'chained' && kubeProxyMode) {
    problems.push(`release.kubeProxy: "${kubeProxy}" is not used in chained mode, where the agent checks Cilium's datapath for a backend instead; remove it or set it to auto or none`);
  }
  if (config.mode === 'signal' && kubeProxyMode) {
    problems.push(`release.kubeProxy: "${kubeProxy}" is not used in signal mode, where nothing is held to release; remove it or set it to auto or none`);
  }

  if (config.mode === 'signal' && config.shutdown.handover > 0) {
    problems.push('shutdown.handover: not used in signal mode, where zerohold attaches no programs to hand over; remove it or set it to 0s');
  }

  const tls = config.hubble.relay?.tls;
  if (tls && (tls.cert === undefined) !== (tls.key === undefined)) {
    problems.push('hubble.relay.tls: cert and key go together, set both for a client certificate or neither');
  }

  // A leader must step down before its Lease can pass to another agent,
  // and must get more than one attempt to renew before it does.
  const { leaseDuration, renewDeadline, retryPeriod } = config.leaderElection;
  if (renewDeadline >= leaseDuration) {
    problems.push(`leaderElection.renewDeadline: expected less than leaderElection.leaseDuration (got ${formatDuration(renewDeadline)} and ${formatDuration(leaseDuration)})`);
  }
  if (retryPeriod <= 0 || retryPeriod >= renewDeadline) {
    problems.push(`leaderElection.retryPeriod: expected above 0 and less than leaderElection.renewDeadline (got ${formatDuration(retryPeriod)} and ${formatDuration(renewDeadline)})`);
  }
  return problems;
}

// Zod's own messages name TypeScript types ("expected int, received
// number"). These name the form a YAML file takes. Messages that the
// schema sets itself take precedence over these.
const EXPECTED_FORMS: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'an integer',
  boolean: 'true or false',
  object: 'a mapping of fields',
  array: 'a list',
};

function issueMessage(issue: z.core.$ZodRawIssue): string | undefined {
  switch (issue.code) {
    case 'invalid_type': {
      const expected = EXPECTED_FORMS[issue.expected] ?? issue.expected;
      return issue.input === undefined ? `missing, expected ${expected}` : `expected ${expected}`;
    }
    case 'too_small':
      if (issue.origin === 'string' && issue.minimum === 1) return 'expected a non-empty string';
      if (issue.origin === 'number' && issue.minimum === 0 && !issue.inclusive) return 'expected a number above 0';
      if (issue.origin === 'number' || issue.origin === 'int') return `expected ${issue.inclusive ? 'at least' : 'above'} ${issue.minimum}`;
      return undefined;
    case 'too_big':
      if (issue.origin === 'number' || issue.origin === 'int') return `expected ${issue.inclusive ? 'at most' : 'below'} ${issue.maximum}`;
      return undefined;
    case 'invalid_value':
      return `expected one of ${issue.values.map((value) => JSON.stringify(value)).join(', ')}`;
    case 'invalid_format':
      if (issue.format === 'starts_with') return `expected a path under ${(issue as { prefix?: string }).prefix}`;
      return undefined;
    default:
      return undefined;
  }
}

// Validates an already parsed document and fills in defaults.
export function validateConfig(document: unknown, source = 'configuration'): AgentConfig {
  const result = agentConfigSchema.safeParse(document ?? {}, { error: issueMessage });
  if (result.success) {
    const problems = crossFieldProblems(result.data);
    if (problems.length > 0) throw new ConfigError(source, problems);
    return result.data;
  }

  const problems = result.error.issues.flatMap((issue) => {
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((key) => `${fieldPath([...issue.path, key])}: unknown field, check its spelling or remove it`);
    }
    const path = fieldPath(issue.path);
    return [`${path || '(top level)'}: ${issue.message} (got ${describeValue(document, issue.path)})`];
  });
  throw new ConfigError(source, problems);
}

export function parseConfig(text: string, source = 'configuration'): AgentConfig {
  let document: unknown;
  try {
    document = parseYaml(text);
  } catch (err) {
    throw new ConfigError(source, [`not valid YAML: ${(err as Error).message}`]);
  }
  return validateConfig(document, source);
}

export async function loadConfig(path: string): Promise<AgentConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const { code, message } = err as NodeJS.ErrnoException;
    const hint = code === 'ENOENT' ? '; pass --config with the path of the agent configuration' : '';
    throw new ConfigError(path, [`cannot read the file: ${message}${hint}`]);
  }
  return parseConfig(text, path);
}
