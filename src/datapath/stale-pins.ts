// Pinned maps that the object can no longer reuse. libbpf reuses a map
// pinned at a map's pin path only when type, key and value sizes, maximum
// entries and flags all match, and otherwise fails the whole load with
// EINVAL. A pin stops matching when an operator changes a size in the
// agent's configuration (bpf.heldRingBytes, bpf.maxServices) or when an
// upgrade changes one of those properties of a map.
//
// Such a pin is set aside before the load, renamed in its directory, so
// that the load creates the map anew and pins it, as on a first start. A
// failed load puts the set-aside pins back, so nothing is lost to it. A
// successful one unlinks them, except that set-aside rings stay open: the
// programs of the previous agent keep writing to them until the new ones
// are attached, and the caller reads them once that is done.

import { readdirSync, renameSync, unlinkSync } from 'node:fs';
import path from 'node:path';

import { loadNative, type MapDefinition, type NativeMap, type NativeObject } from './native.js';

const FIELDS: (keyof MapDefinition)[] = ['type', 'keySize', 'valueSize', 'maxEntries', 'mapFlags'];

// Set-aside pins are named with this prefix. The names of the object's
// pinned maps start with zh_, so no map is ever pinned under it.
const SET_ASIDE_PREFIX = 'replaced_';

export interface ReplacedPin {
  map: string;
  path: string;
  // The differing fields only, as pinned and as the object defines them.
  pinned: Partial<MapDefinition>;
  defined: Partial<MapDefinition>;
}

// Compares the map pinned at pinPath with the object's definition of map,
// and returns the differing fields, or null when nothing is pinned there.
export function comparePin(object: NativeObject, map: string, pinPath: string): ReplacedPin | null {
  let pinned: NativeMap;
  try {
    pinned = loadNative().openPinnedMap(pinPath);
  } catch {
    return null;
  }

  const defined = object.mapDefinition(map);
  const differing = FIELDS.filter((field) => pinned[field] !== defined[field]);
  pinned.close();
  return {
    map,
    path: pinPath,
    pinned: Object.fromEntries(differing.map((field) => [field, pinned[field]])),
    defined: Object.fromEntries(differing.map((field) => [field, defined[field]])),
  };
}

export class StalePins {
  private constructor(
    private readonly pinDir: string,
    readonly replaced: ReplacedPin[],
  ) {}

  // Renames the pins in pinDir of those maps whose definition in the
  // object differs from the pinned map's. The object must not be loaded
  // yet. Maps without a pin are skipped, and a pin that is not a map is
  // left for the load to report. A set-aside pin that a crash left behind
  // is unlinked first.
  static setAside(object: NativeObject, maps: readonly string[], pinDir: string): StalePins {
    for (const name of readdirSync(pinDir)) {
      if (name.startsWith(SET_ASIDE_PREFIX)) unlinkSync(path.join(pinDir, name));
    }

    const replaced: ReplacedPin[] = [];
    for (const map of maps) {
      const pinPath = path.join(pinDir, map);
      const comparison = comparePin(object, map, pinPath);
      if (comparison === null || Object.keys(comparison.pinned).length === 0) continue;

      renameSync(pinPath, path.join(pinDir, SET_ASIDE_PREFIX + map));
      replaced.push(comparison);
    }
    return new StalePins(pinDir, replaced);
  }

  // Puts the set-aside pins back, after a failed load.
  restore(): void {
    for (const { map, path: pinPath } of this.replaced) renameSync(path.join(this.pinDir, SET_ASIDE_PREFIX + map), pinPath);
  }

  // Unlinks the set-aside pins after a successful load, and returns the
  // maps among keep that were set aside, opened, for the caller to read
  // and close.
  release(keep: readonly string[]): Map<string, NativeMap> {
    const native = loadNative();
    const opened = new Map<string, NativeMap>();
    for (const { map } of this.replaced) {
      const setAside = path.join(this.pinDir, SET_ASIDE_PREFIX + map);
      if (keep.includes(map)) opened.set(map, native.openPinnedMap(setAside));
      unlinkSync(setAside);
    }
    return opened;
  }
}
