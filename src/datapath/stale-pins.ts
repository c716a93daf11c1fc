// Pinned maps that the object can no longer reuse. libbpf reuses a map
// pinned at a map's pin path only when type, key and value sizes, maximum
// entries and flags all match, and otherwise fails the whole load with
// EINVAL. A pin stops matching when an operator changes a size in the
// agent's configuration (bpf.heldRingBytes, bpf.maxServices) or when an
// upgrade changes one of those properties of a map. An upgrade that
// changes the layout of a key or value but keeps its size, such as two
// swapped fields, passes libbpf's check, and the new programs would read
// the old values wrongly. So the layouts recorded at the previous load
// (map-layouts.ts) are compared too.
//
// Such a pin is set aside before the load, renamed in its directory to
// replaced_<n>_<map>, so that the load creates the map anew and pins it,
// as on a first start. A failed load puts the set-aside pins back, so it
// loses none of them. A successful one unlinks them, except rings: the
// programs of the previous agent write to them until the new programs are
// attached, so they stay pinned until the caller has read them. A ring
// that a process left set aside when it stopped before reading it is
// read by the next one. A ring whose record layout changed cannot be read
// with this release's layout, so it is unlinked like the other maps, and
// the flows that the previous programs held in it are lost: their clients
// retransmit. A set-aside pin whose map has no pin any more, as
// after a crash between the rename and the load, is put back.

import { existsSync, readdirSync, renameSync, unlinkSync } from 'node:fs';
import path from 'node:path';

import { RecordedLayouts } from './map-layouts.js';
import { loadNative, type MapDefinition, type NativeMap } from './native.js';

const FIELDS = ['type', 'keySize', 'valueSize', 'maxEntries', 'mapFlags'] as const;

// bpffs rejects names with a dot, so the number is set off by underscores.
// The object's pinned maps are named zh_*, so no map is pinned under it.
const SET_ASIDE_NAME = /^replaced_(\d+)_(zh_\w+)$/;

export interface ReplacedPin {
  map: string;
  path: string;
  // The differing fields only, as pinned and as the object defines them.
  pinned: Partial<MapDefinition>;
  defined: Partial<MapDefinition>;
}

// A set-aside ring, open, with the pin to unlink once it has been read.
export interface SetAsideRing {
  map: string;
  pinPath: string;
  ring: NativeMap;
}

// Compares the map pinned at pinPath with defined, the object's
// definition of map, and returns the differing fields, or null when
// nothing is pinned there.
export function comparePin(defined: MapDefinition, map: string, pinPath: string): ReplacedPin | null {
  let pinned: NativeMap;
  try {
    pinned = loadNative().openPinnedMap(pinPath);
  } catch {
    return null;
  }

  const differing = FIELDS.filter((field) => pinned[field] !== defined[field]);
  pinned.close();
  return { map, path: pinPath, pinned: pick(pinned, differing), defined: pick(defined, differing) };
}

function pick<T extends object, K extends keyof T>(source: T, keys: readonly K[]): Pick<T, K> {
  return Object.fromEntries(keys.map((key) => [key, source[key]])) as Pick<T, K>;
}

export class StalePins {
  private constructor(
    readonly replaced: (ReplacedPin & { setAsidePath: string })[],
    // The maps whose set-aside pins are kept for reading.
    private readonly rings: readonly string[],
    // Set-aside rings that an earlier process did not read.
    private readonly leftoverRings: { map: string; pinPath: string }[],
  ) {}

  // Renames the pins in pinDir of those maps whose definition, read before
  // the object loads (layoutsBeforeLoad), differs from the pinned map's.
  // Call it before the load too. rings names the maps whose set-aside pins
  // are kept for reading. Maps without a pin are skipped, and a pin that
  // is not a map is left for the load to report.
  static setAside(definitions: ReadonlyMap<string, MapDefinition>, pinDir: string, rings: readonly string[]): StalePins {
    let names: string[];
    try {
      names = readdirSync(pinDir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new StalePins([], rings, []);
      throw err;
    }

    const leftoverRings: { map: string; pinPath: string }[] = [];
    for (const name of names) {
      const match = SET_ASIDE_NAME.exec(name);
      if (match === null) continue;
      const map = match[2]!;
      const setAsidePath = path.join(pinDir, name);
      const original = path.join(pinDir, map);

      if (!existsSync(original)) renameSync(setAsidePath, original);
      else if (rings.includes(map)) leftoverRings.push({ map, pinPath: setAsidePath });
      else unlinkSync(setAsidePath);
    }

    const replaced: (ReplacedPin & { setAsidePath: string })[] = [];
    const recordedLayouts = RecordedLayouts.open(pinDir);
    try {
      for (const [map, definition] of definitions) {
        const pinPath = path.join(pinDir, map);
        const comparison = comparePin(definition, map, pinPath);
        if (comparison === null) continue;
        if (recordedLayouts !== null) {
          const { recorded, defined } = recordedLayouts.differences(map, definition);
          Object.assign(comparison.pinned, recorded);
          Object.assign(comparison.defined, defined);
        }
        if (Object.keys(comparison.pinned).length === 0) continue;

        const setAsidePath = freeSetAsidePath(pinDir, map);
        renameSync(pinPath, setAsidePath);
        replaced.push({ ...comparison, setAsidePath });
      }
    } finally {
      recordedLayouts?.close();
    }
    return new StalePins(replaced, rings, leftoverRings);
  }

  // Puts the set-aside pins back, after a failed load. Returns the errors
  // of the renames that failed, so the caller can report them with the
  // load's.
  restore(): string[] {
    const errors: string[] = [];
    for (const { path: pinPath, setAsidePath } of this.replaced) {
      try {
        renameSync(setAsidePath, pinPath);
      } catch (err) {
        errors.push(`could not put ${setAsidePath} back at ${pinPath}: ${(err as Error).message}`);
      }
    }
    return errors;
  }

  // Unlinks the set-aside pins after a successful load, except those of
  // rings whose record layout is unchanged, and returns those rings, this
  // load's and those an earlier process left, opened.
  release(): SetAsideRing[] {
    const native = loadNative();
    const rings: SetAsideRing[] = this.leftoverRings.map(({ map, pinPath }) => ({ map, pinPath, ring: native.openPinnedMap(pinPath) }));
    for (const { map, setAsidePath, pinned } of this.replaced) {
      const readable = this.rings.includes(map) && pinned.valueLayout === undefined;
      if (readable) rings.push({ map, pinPath: setAsidePath, ring: native.openPinnedMap(setAsidePath) });
      else unlinkSync(setAsidePath);
    }
    return rings;
  }
}

function freeSetAsidePath(pinDir: string, map: string): string {
  for (let n = 1; ; n++) {
    const candidate = path.join(pinDir, `replaced_${n}_${map}`);
    if (!existsSync(candidate)) return candidate;
  }
}
