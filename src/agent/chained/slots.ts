// Index 0 of the host's pinned prog arrays zh_chain_xdp and zh_chain_tc,
// where the host tail-calls zerohold's chained programs. A slot loses its
// program when the host replaces the pinned array with a new one, for
// example after bpffs was cleared or the array's spec changed, so the
// agent checks the slots periodically and inserts its programs again.

import path from 'node:path';

import type { Datapath } from '../../datapath/datapath.js';
import { loadNative, type NativeMap } from '../../datapath/native.js';

export const CHAIN_SLOTS = [
  { array: 'zh_chain_xdp', program: 'zh_xdp_chained' },
  { array: 'zh_chain_tc', program: 'zh_tc_chained' },
] as const;

export type ChainArrayName = (typeof CHAIN_SLOTS)[number]['array'];

export interface SlotCheck {
  array: ChainArrayName;
  // Id of the pinned prog array, or null when nothing is pinned.
  mapId: number | null;
  // Id of the program found in slot 0 before the check, null for empty.
  foundProgramId: number | null;
  // True when the check stored zerohold's program in the slot.
  inserted: boolean;
}

const SLOT_KEY = Buffer.alloc(4);

// Returns the program id in slot 0 of a prog array, or null for an empty
// slot. A lookup of a prog array from user space returns the program id.
function slotProgramId(map: NativeMap): number | null {
  const value = map.lookup(SLOT_KEY);
  return value === null ? null : value.readUInt32LE(0);
}

export class ChainSlots {
  constructor(
    private readonly datapath: Datapath,
    readonly hostPinDir: string,
  ) {}

  // Inserts each chained program whose slot contains anything else, and
  // reports every array. An array that is not pinned yet is reported with
  // mapId null, because a host that has not loaded yet is normal at
  // startup. Other failures of bpf_obj_get or of the update throw.
  ensureInserted(): SlotCheck[] {
    return CHAIN_SLOTS.map(({ array, program }) => {
      const map = this.openArray(array);
      if (map === null) return { array, mapId: null, foundProgramId: null, inserted: false };

      try {
        const ours = this.datapath.program(program);
        const found = slotProgramId(map);
        if (found === ours.id) return { array, mapId: map.id, foundProgramId: found, inserted: false };

        map.setProgram(0, ours);
        return { array, mapId: map.id, foundProgramId: found, inserted: true };
      } finally {
        map.close();
      }
    });
  }

  // Empties the slots that hold zerohold's programs, so the host falls
  // back to its own no-backend handling. A slot holding another program,
  // such as one a newer agent inserted, stays as it is. Returns the arrays
  // it emptied.
  remove(): ChainArrayName[] {
    const removed: ChainArrayName[] = [];
    for (const { array, program } of CHAIN_SLOTS) {
      const map = this.openArray(array);
      if (map === null) continue;

      try {
        if (slotProgramId(map) === this.datapath.program(program).id && map.clearProgram(0)) removed.push(array);
      } finally {
        map.close();
      }
    }
    return removed;
  }

  private openArray(array: ChainArrayName): NativeMap | null {
    try {
      return loadNative().openPinnedMap(path.join(this.hostPinDir, array));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }
}
