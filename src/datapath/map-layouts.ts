// The layouts of the pinned maps' keys and values, recorded at each load in
// the pinned map zh_map_layouts, so that the next agent can tell whether
// an upgrade changed them. libbpf reuses a pinned map whose type, sizes
// and flags match, whatever its fields mean. The kernel keeps the BTF of
// each map too, but reading it needs CAP_SYS_ADMIN, which the agent's
// DaemonSet does not grant. A record contains digests, because
// zh_map_layouts has fixed-size values (struct zh_map_layout).

import { createHash } from 'node:crypto';
import path from 'node:path';

import { MapLayoutDigests, MapName } from './layout.js';
import { loadNative, type MapDefinition, type NativeMap, type NativeObject } from './native.js';

export const LAYOUTS_MAP = 'zh_map_layouts';

const DIGEST_LENGTH = 16;
const KEY_DIGEST_OFFSET = MapLayoutDigests.members.key_digest!;
const VALUE_DIGEST_OFFSET = MapLayoutDigests.members.value_digest!;

// The recorded digests of one map. An all-zero digest stands for a map
// without BTF.
export interface LayoutDigests {
  keyLayout: Buffer;
  valueLayout: Buffer;
}

// Returns the first 16 bytes of the SHA-256 of a layout string, and 16
// zero bytes for "", which means no BTF.
export function layoutDigest(layout: string): Buffer {
  if (layout === '') return Buffer.alloc(DIGEST_LENGTH);
  return createHash('sha256').update(layout).digest().subarray(0, DIGEST_LENGTH);
}

// The struct of the records in each ring buffer. A ring has no value type
// of its own, so the layout recorded for it is its record's.
export const RING_RECORD_STRUCTS: Readonly<Record<string, string>> = {
  zh_held_ring: 'zh_held_hdr',
  zh_wake_ring: 'zh_wake_event',
};

// Returns the definitions of the given maps in object, to record after the
// load, with the layout of its records as a ring's value layout. Read them
// before the load: libbpf replaces a reused map's BTF type ids with the
// ids in the pinned map's BTF, so afterwards they would be resolved in the
// wrong BTF.
export function layoutsBeforeLoad(object: NativeObject, maps: readonly string[]): Map<string, MapDefinition> {
  return new Map(
    maps.map((map) => {
      const definition = object.mapDefinition(map);
      const record = RING_RECORD_STRUCTS[map];
      const layout = record === undefined ? null : object.structLayout(record);
      return [map, layout === null ? definition : { ...definition, valueLayout: `record ${record} ${JSON.stringify(layout)}` }];
    }),
  );
}

// Writes the digests of the definitions' layouts to layouts, the object's
// own zh_map_layouts once loaded, or a pinned one.
export function recordLayouts(layouts: NativeMap, definitions: ReadonlyMap<string, MapDefinition>): void {
  for (const [map, definition] of definitions) {
    const value = Buffer.alloc(MapLayoutDigests.size);
    layoutDigest(definition.keyLayout).copy(value, KEY_DIGEST_OFFSET);
    layoutDigest(definition.valueLayout).copy(value, VALUE_DIGEST_OFFSET);
    layouts.update(nameKey(map), value);
  }
}

// The zh_map_layouts that a previous agent pinned in a directory.
export class RecordedLayouts {
  private constructor(private readonly map: NativeMap) {}

  // Opens the pin, or returns null when there is none, as before the
  // first start of a release that records layouts, or when its key or
  // value size is not the one this release reads.
  static open(pinDir: string): RecordedLayouts | null {
    let map: NativeMap;
    try {
      map = loadNative().openPinnedMap(path.join(pinDir, LAYOUTS_MAP));
    } catch {
      return null;
    }
    if (map.keySize !== MapName.size || map.valueSize !== MapLayoutDigests.size) {
      map.close();
      return null;
    }
    return new RecordedLayouts(map);
  }

  // Returns the layout fields of definition that differ from the record of
  // map, as recorded and as defined. A map without a record, and a key or
  // value without BTF on either side, has nothing to compare.
  differences(map: string, definition: MapDefinition): { recorded: Partial<MapDefinition>; defined: Partial<MapDefinition> } {
    const recorded: Partial<MapDefinition> = {};
    const defined: Partial<MapDefinition> = {};
    const value = this.map.lookup(nameKey(map));
    if (value === null) return { recorded, defined };

    const digests: LayoutDigests = {
      keyLayout: value.subarray(KEY_DIGEST_OFFSET, KEY_DIGEST_OFFSET + DIGEST_LENGTH),
      valueLayout: value.subarray(VALUE_DIGEST_OFFSET, VALUE_DIGEST_OFFSET + DIGEST_LENGTH),
    };
    for (const field of ['keyLayout', 'valueLayout'] as const) {
      const digest = layoutDigest(definition[field]);
      if (isZero(digest) || isZero(digests[field]) || digest.equals(digests[field])) continue;
      recorded[field] = `recorded digest ${digests[field].toString('hex')}`;
      defined[field] = definition[field];
    }
    return { recorded, defined };
  }

  close(): void {
    this.map.close();
  }
}

// Map names are at most 15 characters, which libbpf and the kernel
// enforce, so the name and its NUL padding fit the key.
function nameKey(map: string): Buffer {
  const key = Buffer.alloc(MapName.size);
  key.write(map, 'latin1');
  return key;
}

function isZero(digest: Buffer): boolean {
  return digest.every((byte) => byte === 0);
}
