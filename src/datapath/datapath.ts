// The datapath of one node: the loaded BPF object, its attachments, the
// ring buffer consumer and the frames held in user space.
//
// Release ordering is the invariant that matters here. A frame that
// arrived on a generic XDP interface is re-injected only after its
// service's gate (its state word) has opened. Generic XDP runs the
// attached program again on a re-injected frame, so with the gate still
// closed the frame would be held a second time. Native XDP and tc do not
// hold a re-injected frame again, so releaseEarly() may send their frames
// while the gate stays closed.

import { EventEmitter } from 'node:events';
import { rmSync } from 'node:fs';
import path from 'node:path';

import { FrontendTable } from './frontends.js';
import { HeldFrameStore, type HeldFlow, type HeldLimits, type HoldOutcome, type RejectReason, type ServiceHeldLimits, DEFAULT_HELD_LIMITS } from './held-frames.js';
import { Hook, Liveness } from './layout.js';
import { LAYOUTS_MAP, layoutsBeforeLoad, recordLayouts } from './map-layouts.js';
import { type AttachHook, InterfaceAttachments } from './attachments.js';
import { type ClsactSweep, loadNative, type MapDefinition, type NativeMap, type NativeObject, type NativeRingBuffer } from './native.js';
import { removeDefunctLinks } from './pinned-links.js';
import { decodeHeldRecord, decodeWakeRecord, peekHeldRecord, splitBatch, type HeldRecord, type WakeRecord } from './records.js';
import { buildLiveFrame, type LiveFrame } from './reinject.js';
import { MAX_HOLD_RATE, ServiceTable, type ServiceSettings, type ServiceStateName } from './services.js';
import { comparePin, type ReplacedPin, type SetAsideRing, StalePins } from './stale-pins.js';
import { repoRoot } from '../paths.js';

export interface DatapathOptions {
  // Path of the compiled object; defaults to build/bpf/zerohold.o.
  objectPath?: string;
  // Network namespace (a path such as /run/netns/node1) of the interfaces
  // this datapath attaches to and re-injects into; the caller's own when
  // unset.
  netns?: string;
  // Directory in bpffs to pin the maps and the XDP and tcx links in. A
  // restarted agent reuses the maps and so keeps its frontends, states and
  // unread ring buffer records. The links keep the programs attached while
  // no agent runs (see pinned-links.ts). One pinDir serves one netns.
  pinDir?: string;
  // bpffs directory of a host datapath's chained-mode maps (for Cilium,
  // /sys/fs/bpf/tc/globals). zh_chain_meta is pinned there, so the host
  // and the chained entries share it.
  chainPinDir?: string;
  maxServices?: number;
  maxFrontends?: number;
  // Buckets of the frontend index, a power of two; about four times
  // maxFrontends keeps nearly every frontend off the slow path.
  indexBuckets?: number;
  heldRingBytes?: number;
  wakeRingBytes?: number;
  heldLimits?: HeldLimits;
  // False discards the frames of a flow that reaches the agent after its
  // release, where they would otherwise be re-injected at once, as a
  // release with reinject false discards the held ones. Defaults to true.
  reinjectLate?: boolean;
}

export type { AttachHook } from './attachments.js';

export interface ReleaseResult {
  released: HeldFlow[];
  failed: { flow: HeldFlow; error: string }[];
  // Flows discarded instead of re-injected, with release.heldPackets drop.
  discarded?: HeldFlow[];
}

export interface DatapathEvents {
  wake: [WakeRecord];
  // A frame the held frame store took: the first of a new flow, or a
  // retransmission replacing the one held.
  held: [HeldRecord, Exclude<HoldOutcome, { result: 'rejected' }>];
  // A flow opener the held frame store rejected because a bound was
  // reached: service id, the bound, and the client's address, which is
  // decoded only when called, because a flood rejects most records before
  // decoding them.
  rejected: [number, RejectReason, () => string];
  // A record arrived for a service whose gate is already open and was
  // re-injected at once (it raced the release), or discarded with
  // reinjectLate false.
  'late-release': [ReleaseResult];
  'record-error': [Error];
}

// libbpf's internal map for the global zh_config in bpf/lib/maps.h. It is
// never pinned, because a fresh object starts from the initial value and
// FrontendTable writes the current settings before anything attaches.
const CONFIG_MAP = '.data.zh_config';
// The global zh_liveness. Like zh_config it starts from its initial value,
// no deadline, in each new object.
const LIVENESS_MAP = '.data.zh_liveness';
export const NO_DEADLINE = (1n << 64n) - 1n;

const MAX_DRAIN_BATCHES = 64;

// Releases of up to this many frames re-inject on the JS thread. Each
// frame blocks it for up to about 100 us, so larger ones use pool threads.
const REINJECT_NOW_FRAMES = 8;
const RING_HELD = 0;
const RING_WAKE = 1;
// The ring maps, in the order of their numbers in a batch.
const RING_MAPS = ['zh_held_ring', 'zh_wake_ring'];
const RING_NUMBERS = [RING_HELD, RING_WAKE];

// The chained entries join prog arrays owned by programs that Cilium's
// loader created with expected_attach_type 0; the kernel rejects a member
// whose expected attach type differs.
const CHAINED_PROGRAMS = ['zh_xdp_chained', 'zh_tc_chained'];

export class Datapath extends EventEmitter<DatapathEvents> {
  readonly frontends: FrontendTable;
  readonly services: ServiceTable;
  readonly held: HeldFrameStore;
  readonly netns: string | undefined;
  readonly attachments: InterfaceAttachments;
  private readonly ring: NativeRingBuffer;
  // Gate state as last written, so a held record can be routed without a
  // map lookup.
  private readonly states = new Map<number, ServiceStateName>();
  // Services whose release is reading the ring with the gate open: their
  // records go to the held frame store, so that the release sends them,
  // and the newest SYN of a flow replaces an older one.
  private readonly releasing = new Set<number>();
  private readonly reinjectLate: boolean;
  private closed = false;
  private readingStopped = false;

  private constructor(
    private readonly object: NativeObject,
    options: DatapathOptions,
    // Pinned maps that open() replaced because their definition changed,
    // with the fields that differed.
    readonly replacedPins: ReplacedPin[] = [],
    // Set-aside rings, which the previous agent's programs may still
    // write to. drainReplacedRings() reads them and unlinks their pins.
    private setAsideRings: SetAsideRing[] = [],
  ) {
    super();
    this.netns = options.netns;
    this.attachments = new InterfaceAttachments({ xdp: () => object.program('zh_xdp_hold'), tc: () => object.program('zh_tc_hold') }, options.netns, options.pinDir);
    this.reinjectLate = options.reinjectLate ?? true;
    this.services = new ServiceTable(object.map('zh_services'), object.map('zh_hold_budget'), object.map('zh_svc_stats'), object.map('zh_stats'));
    this.frontends = new FrontendTable(object.map('zh_frontends'), object.map('zh_fe_index'), object.map(CONFIG_MAP), this.services.maxServiceId);
    this.held = new HeldFrameStore(options.heldLimits ?? DEFAULT_HELD_LIMITS);

    const native = loadNative();
    this.ring = new native.RingBuffer(RING_MAPS.map((name) => object.map(name)), (batch) => this.onBatch(batch));
  }

  static async open(options: DatapathOptions = {}): Promise<Datapath> {
    const native = loadNative();
    const object = new native.BpfObject(options.objectPath ?? path.join(repoRoot, 'build/bpf/zerohold.o'));

    try {
      const sizes: [string, number | undefined][] = [
        ['zh_services', options.maxServices],
        ['zh_wake_state', options.maxServices],
        ['zh_hold_budget', options.maxServices],
        ['zh_svc_stats', options.maxServices],
        ['zh_frontends', options.maxFrontends],
        ['zh_fe_index', options.indexBuckets],
        ['zh_held_ring', options.heldRingBytes],
        ['zh_wake_ring', options.wakeRingBytes],
      ];
      for (const [map, size] of sizes) {
        if (size !== undefined) object.setMaxEntries(map, size);
      }
      for (const prog of CHAINED_PROGRAMS) {
        object.setExpectedAttachType(prog, 0);
      }
      // Checked before any pin is set aside, because the host datapath
      // shares this map, so it is never replaced.
      // NOTE: its layout is not compared, because the host creates it, so
      // no agent records its layout.
      if (options.chainPinDir) {
        const pinPath = path.join(options.chainPinDir, 'zh_chain_meta');
        const comparison = comparePin(object.mapDefinition('zh_chain_meta'), 'zh_chain_meta', pinPath);
        if (comparison !== null && Object.keys(comparison.pinned).length > 0) {
          throw new Error(
            `the pinned map ${pinPath} differs from zerohold's zh_chain_meta (pinned ${JSON.stringify(comparison.pinned)}, expected ${JSON.stringify(comparison.defined)}): ` +
              'the host datapath and this agent implement different versions of the chained-mode contract; run the cilium-patches of this zerohold release',
          );
        }
      }

      let stale: StalePins | undefined;
      let definitions: Map<string, MapDefinition> | undefined;
      if (options.pinDir) {
        const pinned = object.mapNames().filter((name) => name.startsWith('zh_'));
        definitions = layoutsBeforeLoad(object, pinned);
        stale = StalePins.setAside(definitions, options.pinDir, RING_MAPS);
        for (const map of pinned) object.setPinPath(map, path.join(options.pinDir, map));
      }
      if (options.chainPinDir) object.setPinPath('zh_chain_meta', path.join(options.chainPinDir, 'zh_chain_meta'));

      try {
        await object.load();
      } catch (err) {
        const restoreErrors = stale?.restore() ?? [];
        if (restoreErrors.length > 0) (err as Error).message += `\n${restoreErrors.join('\n')}`;
        throw err;
      }
      if (definitions) recordLayouts(object.map(LAYOUTS_MAP), definitions);
      const setAsideRings = stale?.release() ?? [];
      if (options.pinDir) removeDefunctLinks(options.pinDir);
      return new Datapath(object, options, stale?.replaced ?? [], setAsideRings);
    } catch (err) {
      object.close();
      throw err;
    }
  }

  program(name: string) {
    return this.object.program(name);
  }

  map(name: string): NativeMap {
    return this.object.map(name);
  }

  // Names of the attached interfaces by ifindex.
  get interfaceNames(): ReadonlyMap<number, string> {
    return this.attachments.names();
  }

  // Returns the name of an attached interface, for reports of held flows.
  interfaceName(ifindex: number): string | undefined {
    return this.attachments.name(ifindex);
  }

  // Attaches the hold program to an interface of this datapath's netns
  // and returns its ifindex (see InterfaceAttachments.attach()).
  attach(ifname: string, how: AttachHook = { hook: 'xdp' }): Promise<number> {
    return this.attachments.attach(ifname, how);
  }

  detach(ifindex: number, options: { gone?: boolean } = {}): Promise<void> {
    return this.attachments.detach(ifindex, options);
  }

  rename(ifindex: number, ifname: string): void {
    this.attachments.rename(ifindex, ifname);
  }

  attachmentLive(ifindex: number): boolean | undefined {
    return this.attachments.live(ifindex);
  }

  // Inserts the chained entries at index 0 of the host's prog arrays
  // zh_chain_xdp and zh_chain_tc, pinned in dir. Replaces what was there.
  installChained(dir: string): void {
    const native = loadNative();
    for (const [array, prog] of [['zh_chain_xdp', 'zh_xdp_chained'], ['zh_chain_tc', 'zh_tc_chained']] as const) {
      const map = native.openPinnedMap(path.join(dir, array));
      try {
        map.setProgram(0, this.object.program(prog));
      } finally {
        map.close();
      }
    }
  }

  // Writes a service's gate and settings. Its hold budget follows its
  // held-flow bound (setHeldLimits) unless settings name one.
  configureService(id: number, settings: ServiceSettings): void {
    this.services.set(id, { holdRate: this.holdRateOf(id), ...settings });
    this.states.set(id, settings.state);
  }

  // Sets the bounds of a service's held flows in the agent, or with
  // undefined returns them to the defaults. The service's hold budget in
  // the datapath becomes its perService bound, because the agent keeps no
  // more flows of the service than that anyway. The controller calls this
  // on every reconcile, and an unchanged budget costs no syscall.
  setHeldLimits(id: number, limits: ServiceHeldLimits | undefined): void {
    this.held.setServiceLimits(id, limits);
    this.services.setHoldRate(id, this.holdRateOf(id));
  }

  // The configuration accepts held-flow bounds above the largest rate,
  // which get the largest rate.
  private holdRateOf(id: number): number {
    return Math.min(this.held.limitsOf(id).perService, MAX_HOLD_RATE);
  }

  setServiceState(id: number, state: ServiceStateName): void {
    this.services.setState(id, state);
    this.states.set(id, state);
  }

  // Starts delivering ring buffer records as events.
  start(): void {
    this.ring.start();
  }

  // Reads the records already in the ring buffers, synchronously, and
  // returns how many. consume() delivers one capped batch per call; the
  // bound keeps a flood that refills the rings from holding the caller.
  drain(): number {
    if (this.readingStopped) return 0;
    let total = 0;
    for (let batches = 0; batches < MAX_DRAIN_BATCHES; batches++) {
      const count = this.ring.consume();
      if (count === 0) break;
      total += count;
    }
    return total;
  }

  // Opens the gate of a service and re-injects its held frames.
  // With reinject false, the held frames are discarded instead: the client
  // connects at its next retransmission, as with the drop-and-retransmit
  // designs that zerohold's benchmark compares against.
  async release(serviceId: number, options: { reinject?: boolean } = {}): Promise<ReleaseResult> {
    this.setServiceState(serviceId, 'warm');

    // Records submitted before the gate opened are read now into the store,
    // so they go out with this release. A straggler still being copied on
    // another CPU arrives later and takes the late-release path in onBatch.
    this.releasing.add(serviceId);
    let flows: HeldFlow[];
    try {
      this.drain();
      flows = this.held.take(serviceId);
    } finally {
      this.releasing.delete(serviceId);
    }
    if (options.reinject === false) return { released: [], failed: [], discarded: flows };
    return this.reinject(flows);
  }

  // Re-injects the held frames of a service that match, with its gate
  // still closed, and returns them. The caller knows that their frontends
  // have a backend already. Only frames that arrived on an interface where
  // a re-injected frame bypasses the hold program qualify: native XDP, and
  // tc, which passes marked frames. The others stay for release(), because
  // a closed gate would hold them again. With reinject false the matching
  // frames are discarded, as release() does.
  async releaseEarly(serviceId: number, matches: (flow: HeldFlow) => boolean, options: { reinject?: boolean } = {}): Promise<ReleaseResult> {
    this.drain();

    const flows = this.held.takeMatching(serviceId, (flow) => this.attachments.bypassesReinjection(flow.record.ifindex) && matches(flow));
    if (options.reinject === false) return { released: [], failed: [], discarded: flows };
    return this.reinject(flows);
  }

  // Drops the held frames of a service whose first frame is older than
  // cutoffNs, and returns them so the caller can count and report them.
  expire(serviceId: number, cutoffNs: bigint): HeldFlow[] {
    return this.held.takeOlderThan(serviceId, cutoffNs);
  }

  // The number of set-aside rings that drainReplacedRings() has not read.
  get unreadReplacedRings(): number {
    return this.setAsideRings.length;
  }

  // Stops reading the rings for good. Records wait there for the next
  // process that opens the pinned maps.
  stopReading(): void {
    this.readingStopped = true;
    this.ring.close();
  }

  // Reads the records left in the rings that open() set aside, closes
  // them and unlinks their pins. Call it once this datapath's programs are
  // attached, so that no program of the previous agent writes there any
  // more, and after
  // start(), so that the records meet a listening agent. Returns the
  // records read.
  drainReplacedRings(): number {
    const rings = this.setAsideRings;
    this.setAsideRings = [];

    const native = loadNative();
    let records = 0;
    for (const [index, { map, pinPath, ring }] of rings.entries()) {
      // The reader numbers its one ring 0, which stands for the ring that
      // this one was.
      const ringNumbers = [RING_NUMBERS[RING_MAPS.indexOf(map)]!];
      let reader: NativeRingBuffer | undefined;
      try {
        reader = new native.RingBuffer([ring], (batch) => this.onBatch(batch, ringNumbers));
        // Each record takes at least 8 bytes of the ring, so more records
        // than that mean that a program still writes to it. Then what is
        // left stays pinned for the next start.
        const bound = ring.maxEntries / 8;
        let read = 0;
        for (let count = reader.consume(); count > 0 && read <= bound; count = reader.consume()) read += count;
        records += read;
        if (read <= bound) rmSync(pinPath, { force: true });
      } catch (err) {
        // The rings after this one stay pinned for the next start.
        for (const rest of rings.slice(index + 1)) rest.ring.close();
        throw err;
      } finally {
        reader?.close();
        ring.close();
      }
    }
    return records;
  }

  // Detaches the programs that a previous agent pinned in pinDir for
  // interfaces or hooks that this one has not attached, and returns the
  // removed pin paths. Call it once every interface is attached. Without a
  // pinDir there is nothing to find.
  removeUnlistedLinks(): string[] {
    return this.attachments.removeUnlistedLinks();
  }

  // Detaches the clsact filters, which tc uses on kernels before 6.6, that
  // a previous agent left on devices of this netns where this one attached
  // no clsact filter, and returns them. Call it once every interface is
  // attached. Without a pinDir the filters have no fixed position to find.
  removeUnlistedClsactFilters(): Promise<ClsactSweep> {
    return this.attachments.removeUnlistedClsactFilters();
  }

  // Sets the time after which the programs pass flow openers instead of
  // holding them, in CLOCK_MONOTONIC nanoseconds like
  // process.hrtime.bigint(). NO_DEADLINE removes it.
  setLivenessDeadline(deadlineNs: bigint): void {
    const value = Buffer.alloc(Liveness.size);
    value.writeBigUInt64LE(deadlineNs < 0n ? 0n : deadlineNs, Liveness.members.deadline_ns);
    this.object.map(LIVENESS_MAP).update(Buffer.alloc(4), value);
  }

  // Detaches the programs and removes their link pins. The pinned maps
  // stay for the next process. With keepAttached, the programs stay
  // attached through their pinned links and clsact filters, for the next
  // agent to take over. An XDP or tcx link without a pin ends with this
  // process either way.
  async close(options: { keepAttached?: boolean } = {}): Promise<void> {
    if (this.closed) return;
    this.closed = true;

    // Set-aside rings that were not read stay pinned for the next start.
    for (const { ring } of this.setAsideRings.splice(0)) ring.close();
    this.ring.close();
    try {
      await this.attachments.close(options);
    } finally {
      this.object.close();
    }
  }

  private async reinject(flows: HeldFlow[]): Promise<ReleaseResult> {
    const result: ReleaseResult = { released: [], failed: [] };
    const frames: LiveFrame[] = [];
    const sent: HeldFlow[] = [];

    for (const flow of flows) {
      try {
        frames.push(buildLiveFrame(flow.record));
        sent.push(flow);
      } catch (err) {
        result.failed.push({ flow, error: (err as Error).message });
      }
    }
    if (frames.length === 0) return result;

    // The frames are out of the store now, so a call that fails as a whole
    // fails each of them, and the caller counts them. A few frames go out
    // on this thread at once, because a pool thread would first have to be
    // scheduled, which takes milliseconds on a busy node.
    const program = this.object.program('zh_xdp_reinject');
    let outcome: { errors: { index: number; message: string }[] };
    try {
      outcome = frames.length <= REINJECT_NOW_FRAMES ? program.runLiveNow(frames, this.netns) : await program.runLive(frames, this.netns);
    } catch (err) {
      outcome = { errors: sent.map((_, index) => ({ index, message: (err as Error).message })) };
    }
    const failedAt = new Map(outcome.errors.map((e) => [e.index, e.message]));
    sent.forEach((flow, i) => {
      const error = failedAt.get(i);
      if (error === undefined) {
        result.released.push(flow);
      } else {
        result.failed.push({ flow, error });
      }
    });
    return result;
  }

  // Handles the records of a batch. ringNumbers maps the reader's ring
  // numbers to RING_HELD and RING_WAKE, for a reader of other rings.
  private onBatch(batch: Buffer, ringNumbers: readonly number[] = RING_NUMBERS): void {
    const lateFlows: HeldFlow[] = [];

    for (const record of splitBatch(batch)) {
      try {
        const ring = ringNumbers[record.ring];
        if (ring === RING_WAKE) {
          this.emit('wake', decodeWakeRecord(record.data));
          continue;
        }
        if (ring !== RING_HELD) continue;

        // A chained hook holds whenever its host has no backend, whatever
        // the state, so only standalone records can race a release.
        const peek = peekHeldRecord(record.data);
        // An unmanaged id's record was held before its workload was
        // removed. Its frontend passes now, so the record goes on like a
        // late one instead of waiting for a release that will not come.
        const state = peek === undefined ? undefined : this.states.get(peek.serviceId);
        const late = peek !== undefined && (peek.hook === Hook.Xdp || peek.hook === Hook.Tc) && (state === 'warm' || state === 'unmanaged') && !this.releasing.has(peek.serviceId);
        if (peek !== undefined && !late) {
          const reason = this.held.rejection(peek.serviceId, peek.key, peek.tcp);
          if (reason !== undefined) {
            const { data } = record;
            this.emit('rejected', peek.serviceId, reason, () => decodeHeldRecord(data).flow.source);
            continue;
          }
        }

        const held = decodeHeldRecord(record.data);
        if (late) {
          lateFlows.push({ record: held, firstTimestampNs: held.timestampNs, frames: 1 });
          continue;
        }
        const outcome = this.held.add(held);
        if (outcome.result === 'rejected') this.emit('rejected', held.serviceId, outcome.reason, () => held.flow.source);
        else this.emit('held', held, outcome);
      } catch (err) {
        this.emit('record-error', err as Error);
      }
    }

    if (lateFlows.length > 0 && !this.reinjectLate) {
      this.emit('late-release', { released: [], failed: [], discarded: lateFlows });
    } else if (lateFlows.length > 0) {
      // reinject() reports failures in its result and does not reject. A
      // listener that throws makes the chain reject.
      this.reinject(lateFlows)
        .then((result) => this.emit('late-release', result))
        .catch((err: Error) => this.emit('record-error', err));
    }
  }
}
