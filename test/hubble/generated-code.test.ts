// The TypeScript in src/hubble/gen/ is checked in. This test runs the
// generator into a temporary directory and fails when the output differs,
// so an edit to proto/ without `npm run build:proto` does not go unnoticed.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';

import { repoRoot } from '../../src/paths.js';

const execFileAsync = promisify(execFile);

async function listFiles(dir: string, prefix = ''): Promise<string[]> {
  const entries = await readdir(path.join(dir, prefix), { withFileTypes: true });
  const files = await Promise.all(
    entries.map((entry) => (entry.isDirectory() ? listFiles(dir, path.join(prefix, entry.name)) : [path.join(prefix, entry.name)])),
  );
  return files.flat().sort();
}

test('generated code matches proto', async () => {
  const output = await mkdtemp(path.join(tmpdir(), 'zerohold-buf-'));
  const bin = path.join(repoRoot, 'node_modules', '.bin');

  try {
    await execFileAsync(path.join(bin, 'buf'), ['generate', '--template', 'proto/buf.gen.yaml', '--output', output], {
      cwd: repoRoot,
      env: { ...process.env, PATH: `${bin}:${process.env['PATH'] ?? ''}` },
      timeout: 120_000,
    });
    const checkedIn = path.join(repoRoot, 'src/hubble/gen');
    const generated = path.join(output, 'src/hubble/gen');

    const files = await listFiles(checkedIn);
    assert.deepEqual(await listFiles(generated), files, 'run `npm run build:proto`: the generated files differ from src/hubble/gen');
    for (const file of files) {
      const expected = await readFile(path.join(generated, file), 'utf8');
      assert.equal(await readFile(path.join(checkedIn, file), 'utf8'), expected, `run \`npm run build:proto\`: ${file} is out of date`);
    }
  } finally {
    await rm(output, { recursive: true, force: true });
  }
});
