// A datapath that stopped reading its rings, as an agent does at the start
// of a hand-over: the records that arrive after it wait in the pinned
// rings for the next process.

import assert from 'node:assert/strict';
import { mkdirSync, rmSync } from 'node:fs';
import { test } from 'node:test';

import { Datapath } from '../../src/datapath/datapath.js';
import type { HeldRecord } from '../../src/datapath/records.js';
import { buildFrame, TCP_SYN } from '../lib/packets.js';

const XDP_DROP = 1;
const SERVICE = 3;
const SYN = buildFrame({ src: '198.18.0.1', dst: '198.19.0.40', tcp: { srcPort: 40000, dstPort: 80, flags: TCP_SYN } });

test('stopped reading leaves records pinned', async () => {
  const pinDir = `/sys/fs/bpf/zh-test-stop-reading-${process.pid}`;
  mkdirSync(pinDir);
  try {
    const first = await Datapath.open({ pinDir, maxServices: 16 });
    try {
      first.configureService(SERVICE, { state: 'cold', wakeIntervalMs: 0 });
      first.frontends.set({ address: '198.19.0.40', protocol: 'tcp', port: 80 }, SERVICE);
      first.on('held', () => assert.fail('the stopped datapath read a held record'));
      first.start();

      first.stopReading();
      assert.equal(first.program('zh_xdp_hold').testRunSync({ data: SYN }).retval, XDP_DROP);
      assert.equal(first.drain(), 0, 'drain() reads nothing once stopped');
    } finally {
      await first.close();
    }

    const next = await Datapath.open({ pinDir, maxServices: 16 });
    try {
      const heldRecords: HeldRecord[] = [];
      next.on('held', (record) => heldRecords.push(record));

      assert.equal(next.drain(), 2, 'the held record and its wake record');
      assert.equal(heldRecords.length, 1);
      assert.deepEqual(heldRecords[0]!.frame, SYN);
    } finally {
      await next.close();
    }
  } finally {
    rmSync(pinDir, { recursive: true, force: true });
  }
});
