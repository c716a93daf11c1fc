// zh_chain_svcs, the host's pinned hash of the service ids that zerohold
// manages: the host calls zerohold only for a listed id. The set in memory
// is the source of truth. The pinned map follows it, and is written again
// in full when the host replaced the pin with a new, empty map, or when
// the pin appears after the agent started.

import path from 'node:path';

import { loadNative, type NativeMap } from '../../datapath/native.js';

export const CHAIN_SERVICES_MAP = 'zh_chain_svcs';

function idKey(id: number): Buffer {
  const key = Buffer.alloc(4);
  key.writeUInt32LE(id);
  return key;
}

// The value is reserved and must be 0.
const RESERVED_VALUE = Buffer.alloc(4);

export class ChainServiceList {
  private readonly ids = new Set<number>();
  private map: NativeMap | null = null;

  constructor(readonly pinPath: string) {}

  static inDirectory(hostPinDir: string): ChainServiceList {
    return new ChainServiceList(path.join(hostPinDir, CHAIN_SERVICES_MAP));
  }

  // Id of the map that the list writes to, or null before the pin exists.
  get mapId(): number | null {
    return this.map?.id ?? null;
  }

  has(id: number): boolean {
    return this.ids.has(id);
  }

  list(): number[] {
    return [...this.ids];
  }

  // Lists id. Without the pin, the id is written by the first sync() that
  // finds it.
  add(id: number): void {
    this.ids.add(id);
    this.map?.update(idKey(id), RESERVED_VALUE);
  }

  delete(id: number): void {
    this.ids.delete(id);
    this.map?.delete(idKey(id));
  }

  // Reads the ids listed in the pinned map now, such as those a previous
  // agent left. Returns [] while the pin is missing.
  readPinned(): number[] {
    this.sync();
    const ids: number[] = [];
    for (let key = this.map?.nextKey(null) ?? null; key !== null; key = this.map!.nextKey(key)) {
      ids.push(key.readUInt32LE(0));
    }
    return ids;
  }

  // Opens the pin again and, if it names another map than before, writes
  // every id into it. Returns true when it wrote the list. Throws the
  // NativeError of bpf_obj_get for a failure other than a missing pin.
  sync(): boolean {
    const pinned = this.openPinned();
    if (pinned === null) {
      this.map?.close();
      this.map = null;
      return false;
    }
    if (pinned.id === this.map?.id) {
      pinned.close();
      return false;
    }

    this.map?.close();
    this.map = pinned;
    for (const id of this.ids) pinned.update(idKey(id), RESERVED_VALUE);
    return true;
  }

  close(): void {
    this.map?.close();
    this.map = null;
  }

  private openPinned(): NativeMap | null {
    try {
      return loadNative().openPinnedMap(this.pinPath);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }
}
