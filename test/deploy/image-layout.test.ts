// The runtime stage of deploy/Dockerfile, assembled without a container
// runtime: the files that its COPY lines take from the build stages, with
// the production dependencies only, as `npm prune --omit=dev` leaves them.
// The agent and the CLI must start from that directory, and the agent must
// find its addon and BPF object there. So a runtime import of a dev
// dependency, or of a file that the image lacks, fails here instead of in
// a cluster. The base image's Node.js and Debian packages are not part of
// the check.

import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { repoRoot } from '../../src/paths.js';
import { run } from '../lib/netns.js';

const DOCKERFILE = path.join(repoRoot, 'deploy/Dockerfile');
// Where the build stages keep the checkout (their WORKDIR).
const STAGE_ROOT = '/src/';

interface Copy {
  stage: string;
  source: string;
  destination: string;
}

// The COPY --from lines of the last stage, and its WORKDIR.
function runtimeStage(dockerfile: string): { workdir: string; copies: Copy[] } {
  const lines = dockerfile.split('\n');
  let lastFrom = 0;
  lines.forEach((line, index) => {
    if (line.startsWith('FROM ')) lastFrom = index;
  });
  const stage = lines.slice(lastFrom);
  const workdir = stage.find((line) => line.startsWith('WORKDIR '))?.slice('WORKDIR '.length).trim();
  assert.ok(workdir, 'the runtime stage has no WORKDIR');

  const copies: Copy[] = [];
  for (const line of stage) {
    const match = /^COPY --from=(\S+) (\S+) (\S+)$/.exec(line.trim());
    if (match) copies.push({ stage: match[1]!, source: match[2]!, destination: match[3]! });
  }
  return { workdir, copies };
}

// Where Docker puts a COPY source: a directory's contents go into the
// destination directory, and a file goes into a destination that ends
// with "/", or else to the destination path itself.
function copyTarget(layoutDir: string, source: string, destination: string): string {
  const target = path.resolve(layoutDir, destination);
  return !source.endsWith('/') && destination.endsWith('/') ? path.join(target, path.basename(source)) : target;
}

// The directories of the production dependencies, relative to the
// checkout, as npm lists them.
async function productionPackages(): Promise<string[]> {
  const { stdout } = await run('npm', ['ls', '--omit=dev', '--all', '--parseable'], 60_000);
  return stdout
    .split('\n')
    .filter((line) => line.startsWith(path.join(repoRoot, 'node_modules')))
    .map((line) => path.relative(repoRoot, line));
}

let layout: string;
let copies: Copy[];
let production: string[];

before(async () => {
  const stage = runtimeStage(readFileSync(DOCKERFILE, 'utf8'));
  copies = stage.copies;
  production = await productionPackages();
  layout = mkdtempSync(path.join(tmpdir(), 'zerohold-image-'));

  for (const copy of copies) {
    assert.ok(copy.source.startsWith(STAGE_ROOT), `COPY --from=${copy.stage} ${copy.source}: expected a path under ${STAGE_ROOT}`);
    const source = copy.source.slice(STAGE_ROOT.length);
    const destination = copyTarget(layout, copy.source, copy.destination);
    if (source.replace(/\/$/, '') === 'node_modules') {
      for (const dir of production) cpSync(path.join(repoRoot, dir), path.join(destination, path.relative('node_modules', dir)), { recursive: true });
      continue;
    }
    cpSync(path.join(repoRoot, source), destination, { recursive: true });
  }
});

after(() => {
  if (layout) rmSync(layout, { recursive: true, force: true });
});

test('runtime stage copies from build stages', () => {
  assert.deepEqual(
    copies.map((copy) => copy.source),
    ['/src/package.json', '/src/node_modules/', '/src/build/Release/', '/src/dist/src/', '/src/build/bpf/zerohold.o'],
  );
});

// Some dev dependencies, such as @types/node, are dependencies of
// production packages too, and stay.
test('production layout lacks dev dependencies', () => {
  const devDependencies = Object.keys((JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { devDependencies: object }).devDependencies);
  const devOnly = devDependencies.filter((name) => !production.includes(path.join('node_modules', name)));

  assert.ok(devOnly.includes('typescript'), `dev-only packages: ${devOnly.join(', ')}`);
  for (const name of devOnly) {
    assert.equal(existsSync(path.join(layout, 'node_modules', name)), false, `${name} is in the layout`);
  }
});

test('agent starts from image layout', async () => {
  const { stdout } = await run(process.execPath, [path.join(layout, 'dist/src/agent/main.js'), '--help']);

  assert.match(stdout, /^usage: zerohold-agent/);
});

test('cli starts from image layout', async () => {
  const { stdout } = await run(process.execPath, [path.join(layout, 'dist/src/cli/zerohold.js'), '--help']);

  assert.match(stdout, /--help/);
});

// The agent resolves both from its own installation directory, as the
// image has them when bpf.objectPath is unset.
test('agent finds addon and bpf object', async () => {
  const module = (file: string) => JSON.stringify(path.join(layout, 'dist/src', file));
  const script = `
    const { repoRoot } = await import(${module('paths.js')});
    const native = await import(${module('datapath/native.js')});
    const object = new (native.loadNative().BpfObject)(repoRoot + '/build/bpf/zerohold.o');
    console.log(JSON.stringify({ repoRoot, addon: native.NATIVE_ADDON_PATH, programs: object.programNames() }));
    object.close();
  `;
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script]);
  const report = JSON.parse(stdout) as { repoRoot: string; addon: string; programs: string[] };

  assert.equal(report.repoRoot, layout);
  assert.equal(report.addon, path.join(layout, 'build/Release/zerohold.node'));
  assert.ok(report.programs.includes('zh_xdp_hold'), `programs: ${report.programs.join(', ')}`);
});
