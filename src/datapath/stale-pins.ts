// Pinned maps that the object can no longer reuse. libbpf reuses a map
// pinned at a map's pin path only when type, key and value sizes, maximum
// entries and flags all match, and otherwise fails the whole load with
// EINVAL. A pin stops matching when an operator changes a size in the
// agent's configuration (bpf.heldRingBytes, bpf.maxServices) or when an
// upgrade changes a map's layout. Such a pin is unlinked before the load,
// so the load creates the map anew and pins it, as on a first start.

import { unlinkSync } from 'node:fs';
import path from 'node:path';

import { loadNative, type MapDefinition, type NativeMap, type NativeObject } from './native.js';

const FIELDS: (keyof MapDefinition)[] = ['type', 'keySize', 'valueSize', 'maxEntries', 'mapFlags'];

export interface ReplacedPin {
  map: string;
  path: string;
  // The differing fields only, as pinned and as the object defines them.
  pinned: Partial<MapDefinition>;
  defined: Partial<MapDefinition>;
}

// Unlinks the pins in pinDir of those maps whose definition in the object
// differs from the pinned map's, and returns them. The object must not be
// loaded yet. Maps without a pin are skipped, and a pin that is not a map
// is left for the load to report.
export function unlinkStalePins(object: NativeObject, maps: readonly string[], pinDir: string): ReplacedPin[] {
  const native = loadNative();
  const replaced: ReplacedPin[] = [];

  for (const map of maps) {
    const pinPath = path.join(pinDir, map);
    let pinned: NativeMap;
    try {
      pinned = native.openPinnedMap(pinPath);
    } catch {
      continue;
    }

    const defined = object.mapDefinition(map);
    const differing = FIELDS.filter((field) => pinned[field] !== defined[field]);
    const entry: ReplacedPin = {
      map,
      path: pinPath,
      pinned: Object.fromEntries(differing.map((field) => [field, pinned[field]])),
      defined: Object.fromEntries(differing.map((field) => [field, defined[field]])),
    };
    pinned.close();
    if (differing.length === 0) continue;

    unlinkSync(pinPath);
    replaced.push(entry);
  }
  return replaced;
}
