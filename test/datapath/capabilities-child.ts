// Child process of capabilities.test.ts, started inside a network namespace
// with only the capabilities of the agent's DaemonSet. Usage: node
// capabilities-child.js '<json options>'. It runs the datapath steps that
// an agent start and a cold start take, the UDP listen check and the
// kube-proxy checks,
// and prints one JSON line with what each returned or the error it threw.

import { pino } from 'pino';

import { ChainedDatapath } from '../../src/agent/chained/ports.js';
import type { ServiceIdSource } from '../../src/agent/chained/service-ids.js';
import { KubeProxyNftables } from '../../src/agent/kube-proxy-check.js';
import { KubeProxyIptables } from '../../src/agent/kube-proxy-iptables-check.js';
import { udpBoundProbe } from '../../src/agent/udp-bound-probe.js';
import { Datapath } from '../../src/datapath/datapath.js';
import type { Frontend } from '../../src/datapath/frontends.js';
import type { HeldRecord } from '../../src/datapath/records.js';
import { buildLiveFrame } from '../../src/datapath/reinject.js';
import { buildFrame, TCP_SYN } from '../lib/packets.js';

export interface ChildOptions {
  pinDir: string;
  maxServices: number;
  // Interfaces to attach the XDP and the clsact program to; "" for none.
  xdpInterface: string;
  clsactInterface: string;
  // Leaves the clsact filter attached at exit, as a SIGKILL would.
  keepAttached: boolean;
  // A frontend to wait for in kube-proxy's iptables rules or nftables
  // maps, if any.
  iptablesFrontend?: Frontend;
  nftablesFrontend?: Frontend;
  // A directory where a host datapath pinned its chained-mode maps. The
  // child then runs a chained agent's datapath steps against it, twice.
  chainedHostPinDir?: string;
  // UDP endpoints on this node to run the release's listen check on.
  udpEndpoints?: { address: string; port: number }[];
}

const options = JSON.parse(process.argv[2]!) as ChildOptions;
const report: Record<string, unknown> = {};

try {
  const dp = await Datapath.open({ pinDir: options.pinDir, maxServices: options.maxServices });
  report.replacedPins = dp.replacedPins.map((pin) => pin.map).sort();
  if (options.xdpInterface) await dp.attach(options.xdpInterface, { hook: 'xdp', mode: 'generic' });
  if (options.clsactInterface) await dp.attach(options.clsactInterface, { hook: 'tc', kind: 'clsact' });
  const sweep = await dp.removeUnlistedClsactFilters();
  report.sweptInterfaces = sweep.detached.map((filter) => filter.ifname);
  report.sweepErrors = sweep.errors.map((err) => err.message);

  // A flow opener of a cold Service is held, read from the ring and
  // re-injected.
  dp.configureService(1, { state: 'cold', wakeIntervalMs: 0 });
  dp.frontends.set({ address: '198.19.0.40', protocol: 'tcp', port: 80 }, 1);
  const held: HeldRecord[] = [];
  dp.on('held', (record) => held.push(record));
  const syn = buildFrame({ src: '198.18.0.1', dst: '198.19.0.40', tcp: { srcPort: 40000, dstPort: 80, flags: TCP_SYN } });
  report.holdVerdict = dp.program('zh_xdp_hold').testRunSync({ data: syn }).retval;
  dp.drain();
  report.heldRecords = held.length;
  if (held.length > 0) {
    const ifindex = [...dp.interfaceNames.keys()][0] ?? 1;
    report.reinjected = await dp.program('zh_xdp_reinject').runLive([{ ...buildLiveFrame(held[0]!), ifindex }]);
  }

  if (options.udpEndpoints) {
    const probe = udpBoundProbe(dp.program('zh_tc_udp_bound'));
    report.udpBound = await Promise.all(options.udpEndpoints.map(({ address, port }) => probe(address, port)));
  }

  await dp.close({ keepAttached: options.keepAttached });

  if (options.iptablesFrontend) {
    const iptables = new KubeProxyIptables({ log: pino({ level: 'silent' }) });
    await iptables.start();
    report.iptablesProgrammed = await iptables.waitProgrammed([options.iptablesFrontend], 3000);
    await iptables.stop();
  }
  if (options.chainedHostPinDir) report.chained = await runChained(options.chainedHostPinDir);
  if (options.nftablesFrontend) {
    const nftables = new KubeProxyNftables({ log: pino({ level: 'silent' }) });
    await nftables.start();
    report.nftablesProgrammed = await nftables.waitProgrammed([options.nftablesFrontend], 3000);
    await nftables.stop();
  }
} catch (err) {
  report.error = (err as Error).message;
}
process.stdout.write(`${JSON.stringify(report)}\n`);

// Opens a chained datapath against the host's pins, claims the host's
// service id 5 for one cold workload, inserts the programs into the
// host's prog arrays and closes it. A second run does the same, as a
// restarted agent.
async function runChained(hostPinDir: string): Promise<Record<string, unknown>> {
  const frontend: Frontend = { address: '198.19.0.43', protocol: 'tcp', port: 80 };
  const ids: ServiceIdSource = { revNatIdsOf: (frontends) => (frontends.length > 0 ? [5] : []), onChange: () => undefined };
  const result: Record<string, unknown> = {};
  for (const run of ['first', 'restart']) {
    const chained = await ChainedDatapath.open({ pinDir: `${options.pinDir}-chained`, maxServices: 16 }, ids, {
      hostPinDir,
      reinsertIntervalMs: 1000,
      wakeIntervalMs: 0,
      log: pino({ level: 'silent' }),
    });
    try {
      chained.setFrontends('default/web', [frontend], true);
      chained.start();
      result[run] = { replacedPins: chained.datapath.replacedPins.map((pin) => pin.map), inPlace: chained.programsInPlace(), ids: chained.serviceIdsOf('default/web') };
    } finally {
      await chained.close();
    }
  }
  return result;
}
