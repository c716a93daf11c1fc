import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { STRUCTS } from '../../src/datapath/layout.js';
import { loadNative, type NativeObject } from '../../src/datapath/native.js';
import { repoRoot } from '../../src/paths.js';

let object: NativeObject;

before(() => {
  object = new (loadNative().BpfObject)(path.join(repoRoot, 'build/bpf/zerohold.o'));
});

after(() => object.close());

for (const [name, layout] of Object.entries(STRUCTS)) {
  test(`layout of ${name} matches BTF`, () => {
    const btf = object.structLayout(name);
    assert.ok(btf, `struct ${name} is missing from the object's BTF`);

    assert.equal(btf.size, layout.size, `sizeof(struct ${name})`);
    const btfOffsets = Object.fromEntries(btf.members.map((m) => [m.name, m.offset]));
    assert.deepEqual(btfOffsets, layout.members);
  });
}
