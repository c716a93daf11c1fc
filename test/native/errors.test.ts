// Error paths of the addon: each failure names the call, carries the errno
// code and, for the verifier, the log that explains the rejection.

import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { Datapath } from '../../src/datapath/datapath.js';
import { loadNative } from '../../src/datapath/native.js';
import { repoRoot } from '../../src/paths.js';

const native = loadNative();
let dp: Datapath;

before(async () => {
  dp = await Datapath.open({ maxServices: 8 });
});

after(() => dp.close());

test('missing object file', () => {
  assert.throws(() => new native.BpfObject('/nonexistent/zerohold.o'), (err: NodeJS.ErrnoException) => {
    assert.equal(err.code, 'ENOENT');
    assert.equal(err.syscall, 'bpf_object__open_file');
    assert.match(err.message, /\/nonexistent\/zerohold\.o/);
    return true;
  });
});

test('wrong key size', () => {
  const map = dp.map('zh_frontends');
  assert.throws(() => map.lookup(Buffer.alloc(3)), /key for map zh_frontends is 3 bytes, expected 20/);
  assert.throws(() => map.update(Buffer.alloc(20), Buffer.alloc(2)), /value for map zh_frontends is 2 bytes, expected 4/);
});

test('unknown interface', async () => {
  await assert.rejects(dp.attach('zh-no-such-if'), (err: NodeJS.ErrnoException) => {
    assert.equal(err.code, 'ENODEV');
    assert.match(err.message, /zh-no-such-if/);
    return true;
  });
});

test('unknown ifindex on attach', async () => {
  // The kernel returns EINVAL from link_create for a missing device.
  await assert.rejects(native.attachXdp(dp.program('zh_xdp_hold'), 0x7ffffff0, 'native'), (err: NodeJS.ErrnoException) => {
    assert.equal(err.code, 'EINVAL');
    assert.equal(err.syscall, 'bpf_link_create');
    assert.match(err.message, /ifindex 2147483632/);
    return true;
  });
});

test('verifier rejection carries its log', async () => {
  const object = new native.BpfObject(path.join(repoRoot, 'build/bpf/test/verifier_reject.o'));
  try {
    await assert.rejects(object.load(), (err: Error & { code?: string; syscall?: string; verifierLog?: string }) => {
      assert.equal(err.code, 'EACCES');
      assert.ok(err.verifierLog, 'error carries verifierLog');
      // The kernel names the offending access in its log.
      assert.match(err.verifierLog, /invalid access to packet|R\d+ .*(invalid|pointer)/);
      assert.match(err.message, /invalid access to packet|R\d+ /);
      return true;
    });
  } finally {
    object.close();
  }
});

test('unknown map and program names', () => {
  assert.throws(() => dp.map('zh_nope'), /zh_nope/);
  assert.throws(() => dp.program('zh_nope'), /zh_nope/);
});

test('handles fail after object close', async () => {
  const other = await Datapath.open({ maxServices: 8 });
  const map = other.map('zh_stats');
  await other.close();
  assert.throws(() => map.lookup(Buffer.alloc(4)), /closed/);
});

test('missing pinned link', () => {
  const pinPath = `/sys/fs/bpf/zh-test-no-link-${process.pid}`;
  assert.throws(() => native.openPinnedLink(pinPath), (err: NodeJS.ErrnoException) => {
    assert.equal(err.code, 'ENOENT');
    assert.equal(err.syscall, 'bpf_obj_get');
    assert.match(err.message, new RegExp(pinPath));
    return true;
  });
});

test('pinned map opened as a link', () => {
  const pinPath = `/sys/fs/bpf/zh-test-map-as-link-${process.pid}`;
  dp.map('zh_stats').pin(pinPath);
  try {
    assert.throws(() => native.openPinnedLink(pinPath), (err: NodeJS.ErrnoException) => {
      assert.equal(err.code, 'EINVAL');
      assert.equal(err.syscall, 'bpf_obj_get');
      assert.match(err.message, /is a bpf-map, expected a bpf-link/);
      return true;
    });
  } finally {
    rmSync(pinPath, { force: true });
  }
});

test('re-injection error names the frame', () => {
  // ifindex 0x7ffffff0 exists in no namespace.
  const frame = Buffer.alloc(74);
  const { sent, errors } = dp.program('zh_xdp_reinject').runLiveNow([{ frame, ifindex: 0x7ffffff0 }]);

  assert.equal(sent, 0);
  assert.equal(errors.length, 1);
  assert.equal(errors[0]!.code, 'ENODEV');
  assert.match(errors[0]!.message, /zh_xdp_reinject, ifindex 2147483632, rx queue 0, 74 bytes/);
  assert.match(errors[0]!.message, /no device has this ifindex in the datapath's network namespace/);
});

test('program into a map of another type', () => {
  assert.throws(() => dp.map('zh_frontends').setProgram(0, dp.program('zh_xdp_hold')), (err: NodeJS.ErrnoException) => {
    assert.ok(err instanceof TypeError);
    assert.equal(err.code, 'ERR_ZH_MAP_TYPE');
    assert.match(err.message, /map zh_frontends has type 1, but programs go into a BPF_MAP_TYPE_PROG_ARRAY \(type 3\)/);
    return true;
  });
  assert.throws(() => dp.map('zh_frontends').clearProgram(0), /map zh_frontends has type 1/);
});
