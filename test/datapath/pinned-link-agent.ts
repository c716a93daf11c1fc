// Child process of pinned-links.test.ts, in place of an agent that gets
// SIGKILLed. Usage: node pinned-link-agent.js '<json options>'. It opens a
// datapath with a pinDir, makes service 1 cold with a frontend, attaches,
// prints one JSON line with the program id, and then waits to be killed.
// It never reads the ring buffers, so held records wait for the next
// process.

import { Datapath, type AttachHook } from '../../src/datapath/datapath.js';

interface ChildOptions {
  netns: string;
  pinDir: string;
  ifname: string;
  how: AttachHook;
  frontend: { address: string; port: number };
}

const options = JSON.parse(process.argv[2]!) as ChildOptions;
const hookProgram = options.how.hook === 'xdp' ? 'zh_xdp_hold' : 'zh_tc_hold';

const dp = await Datapath.open({ netns: options.netns, pinDir: options.pinDir, maxServices: 8 });
dp.configureService(1, { state: 'cold', wakeIntervalMs: 0 });
dp.frontends.set({ address: options.frontend.address, protocol: 'tcp', port: options.frontend.port }, 1);
await dp.attach(options.ifname, options.how);

process.stdout.write(`${JSON.stringify({ progId: dp.program(hookProgram).id })}\n`);
setInterval(() => undefined, 60_000);
