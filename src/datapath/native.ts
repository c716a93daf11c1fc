// Types and loader of the native addon, build/Release/zerohold.node, built
// from src/native/ by node-gyp. The addon does only native work: libbpf
// calls, syscalls and the ring buffer poll. Policy lives in TypeScript.
//
// Errors:
// - A wrong argument type or size throws a TypeError with a `code`, such as
//   ERR_INVALID_ARG_TYPE or ERR_ZH_KEY_SIZE.
// - A failed libbpf call or syscall throws a NativeError.
// - Use of a closed handle throws an Error with code ERR_ZH_CLOSED.
// - Functions that return a Promise never throw; they reject instead.

import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Error for a failed libbpf call or syscall. The message reads like
 * "bpf_object__load(zerohold.o) failed: Permission denied (EACCES)".
 */
export interface NativeError extends Error {
  code: string; // symbolic errno, e.g. 'ENOENT'
  errno: number; // positive errno value
  syscall: string; // the failing call, e.g. 'bpf_object__load'
}

/** Rejection of NativeObject.load(). */
export interface LoadError extends NativeError {
  verifierLog: string; // verifier output of the program that failed, or ''
  libbpfLog: string; // libbpf's warnings during the load
}

export type XdpMode = 'native' | 'generic' | 'auto';
export type XdpAttachMode = 'none' | 'native' | 'generic' | 'offload' | 'multi';
export type TcDirection = 'ingress' | 'egress';
export type TcKind = 'auto' | 'tcx' | 'clsact';

/** A clsact filter that detachClsactFilters() removed. */
export interface DetachedClsactFilter {
  ifname: string;
  ifindex: number;
  progId: number;
  progName: string;
}

/** The result of detachClsactFilters(): the filters removed, and the devices it could not sweep. */
export interface ClsactSweep {
  detached: DetachedClsactFilter[];
  errors: (NodeJS.ErrnoException & { ifname: string })[];
}

/** A clsact filter position: attachTc replaces the filter there, if any. */
export interface TcFilterOptions {
  handle: number; // non-zero
  priority: number; // 1 to 65535; lower runs first
}

/** Link information from bpf_obj_get_info_by_fd. */
export interface NativeLinkInfo {
  type: number; // BPF_LINK_TYPE_*
  id: number;
  progId: number;
  /** XDP and tcx links only. 0 once the device is gone. */
  ifindex?: number;
  /** XDP and tcx links only: BPF_XDP, BPF_TCX_INGRESS or BPF_TCX_EGRESS. */
  attachType?: number;
}

/** Result of queryXdp. Each id is 0 when no program is attached there. */
export interface XdpQueryResult {
  /** The single attached program; for 'multi' the native one. */
  progId: number;
  mode: XdpAttachMode;
  nativeProgId: number;
  genericProgId: number;
}

export interface NativeBinding {
  /** Opens an ELF object with bpf_object__open_file. Throws NativeError. */
  BpfObject: new (path: string) => NativeObject;

  /** Opens a map pinned in bpffs; the path must name a map, not a program or link. */
  openPinnedMap(path: string): NativeMap;

  /**
   * Opens a bpf_link pinned in bpffs. Throws a NativeError with syscall
   * 'bpf_obj_get': ENOENT for a missing path, EINVAL for a pin that is no
   * link.
   */
  openPinnedLink(path: string): NativeLink;

  numPossibleCpus(): number;

  /**
   * Resolves a device name inside the network namespace bound at netns
   * (e.g. /run/netns/NAME), or in the process's namespace when omitted.
   * Rejects with code ENODEV for an unknown name.
   */
  ifNameToIndex(name: string, netns?: string): Promise<number>;

  /**
   * Reads a device's link type, ARPHRD_* in <linux/if_arp.h> (1 for
   * Ethernet), inside the network namespace bound at netns, or in the
   * process's namespace when omitted. Rejects with code ENODEV for an
   * unknown name.
   */
  interfaceLinkType(name: string, netns?: string): Promise<number>;

  /**
   * Lists the interfaces of the network namespace bound at netns, or of
   * the process's namespace when omitted, from one consistent RTM_GETLINK
   * dump. Rejects with code EAGAIN when interfaces kept changing during
   * five dumps.
   */
  listInterfaces(netns?: string): Promise<InterfaceInfo[]>;

  /**
   * Watches the interfaces of the network namespace bound at netns, or of
   * the process's namespace when omitted. onChange runs on the event loop
   * with the notifications read in one wakeup. overrun is true when the
   * kernel dropped notifications because the socket's queue was full, so
   * the caller lists the interfaces again. receiveBufferBytes sets the
   * socket's SO_RCVBUF (1 MiB by default, capped by net.core.rmem_max).
   */
  InterfaceMonitor: new (netns: string | undefined, onChange: (events: InterfaceEvent[], overrun: boolean) => void, receiveBufferBytes?: number) => NativeInterfaceMonitor;

  /**
   * Creates an unconnected TCP socket of the given IP family inside the
   * network namespace bound at netns and returns its file descriptor,
   * which the caller owns. A net.Socket opened on it connects from that
   * namespace. Throws with code ENOENT for a path that does not exist.
   */
  netnsSocket(family: 4 | 6, netns: string): number;

  /**
   * Finds the network namespace on this node that has an endpoint's
   * address, looking from the namespace bound at netns (default: the
   * process's own). netnsId is relative to that namespace: -1 for an
   * address of its own (device "lo"), else the namespace of a pod behind
   * the veth named device. reason explains why none was found. Rejects with a TypeError for an address that
   * is not numeric, and with a SysError when a netlink request fails.
   */
  endpointNetns(address: string, netns?: string): Promise<EndpointNetns>;

  /**
   * Finds the namespace as endpointNetns() does, trying hintNetnsId (an
   * id found before) first, and runs program, zh_tc_udp_bound, on frame
   * with BPF_PROG_RUN, with the namespace id in cb[0] of the context. The
   * run happens in netns, on the same pool thread, and the namespace is
   * checked for the address again after it, in case its id passed to
   * another meanwhile. Resolves with the program's return value, or with
   * a reason when no namespace was found.
   */
  udpSocketBound(program: NativeProgram, frame: Buffer, address: string, netns?: string, hintNetnsId?: number): Promise<{ retval: number; netnsId: number; reason?: undefined } | { reason: string; retval?: undefined; netnsId?: undefined }>;

  /**
   * Attaches an XDP program with a bpf_link. 'auto' tries native mode and
   * falls back to generic mode only when the driver lacks native XDP
   * (EOPNOTSUPP).
   */
  attachXdp(prog: NativeProgram, ifindex: number, mode: XdpMode, netns?: string): Promise<NativeLink>;

  /**
   * Attaches a tc program. 'tcx' uses a bpf_link (Linux 6.6+), 'clsact' a
   * direct-action filter that creates the clsact qdisc if it is missing,
   * and 'auto' uses tcx unless the kernel lacks it (EINVAL). filter
   * applies to clsact only: without it the kernel picks a free handle and
   * priority.
   */
  attachTc(
    prog: NativeProgram,
    ifindex: number,
    direction: TcDirection,
    kind: TcKind,
    netns?: string,
    filter?: TcFilterOptions,
  ): Promise<NativeTcAttachment>;

  /**
   * Detaches the clsact ingress filters at the filter position whose
   * program is named in programNames, on every device of netns except
   * keepIfindexes. The clsact qdiscs stay. A device whose query or detach
   * failed is reported in errors, and the others are still swept.
   */
  detachClsactFilters(
    programNames: readonly string[],
    keepIfindexes: readonly number[],
    filter: TcFilterOptions,
    netns?: string,
  ): Promise<ClsactSweep>;

  /** Reports the XDP programs on a device. */
  queryXdp(ifindex: number, netns?: string): Promise<XdpQueryResult>;

  RingBuffer: new (maps: NativeMap[], onBatch: (batch: Buffer) => void) => NativeRingBuffer;

  constants: NativeConstants;
}

export interface BtfStructLayout {
  size: number;
  members: { name: string; offset: number; size: number }[];
}

/** The properties that a pinned map must share with a definition to be reused. */
export interface MapDefinition {
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  mapFlags: number;
  /**
   * The memory layouts of the key and value in the object's BTF: member
   * names, bit offsets and member layouts, with type names left out, such
   * as "struct(16){state:u32@0,flags:u32@32,wake_interval_ns:u64@64}".
   * Equal strings mean the bytes mean the same. "" means no BTF.
   */
  keyLayout: string;
  valueLayout: string;
}

/**
 * A BPF ELF object. Configure it with the set* methods, then call load()
 * once. Maps and programs taken from it keep it open until close().
 */
export interface NativeObject {
  readonly path: string;
  programNames(): string[];
  /** Includes libbpf's internal maps such as .rodata. */
  mapNames(): string[];
  /**
   * The map's definition as load() would create it. Throws a TypeError for
   * an unknown name. Read layouts before load(), because libbpf then gives
   * a map reused from a pin the type ids of the pinned map's own BTF.
   */
  mapDefinition(map: string): MapDefinition;

  // The set* methods throw ERR_ZH_ALREADY_LOADED after load().
  setProgramType(prog: string, type: number): void;
  /** 0 is a valid type (BPF_CGROUP_INET_INGRESS), not "unset". */
  setExpectedAttachType(prog: string, type: number): void;
  setAutoload(prog: string, autoload: boolean): void;
  setMaxEntries(map: string, maxEntries: number): void;
  /**
   * Reuses the map pinned at path if its type, sizes and flags match, and
   * pins the new map there otherwise. A mismatch makes load() reject with
   * EINVAL; the caller decides whether to unlink the old pin and retry.
   */
  setPinPath(map: string, path: string): void;

  /** Rejects with a LoadError. Runs at most once, even if it fails. */
  load(): Promise<void>;

  /** Throws a TypeError naming the map if it does not exist. Needs load(). */
  map(name: string): NativeMap;
  program(name: string): NativeProgram;

  /** Byte layout of a struct from the object's BTF, or null if the object has no such struct. */
  structLayout(name: string): BtfStructLayout | null;

  /** Idempotent. Maps and programs taken from the object throw ERR_ZH_CLOSED afterwards. */
  close(): void;
}

/** Map element operations are synchronous: each is one fast bpf() syscall. */
export interface NativeMap {
  readonly name: string;
  readonly type: number;
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;
  readonly fd: number;
  readonly id: number;
  /** Bytes of a value buffer: valueSize, or round_up(valueSize, 8) * possible CPUs for per-CPU maps. */
  readonly valueBufferSize: number;
  /** The map_flags the kernel reports, such as BPF_F_MMAPABLE (0x400). */
  readonly mapFlags: number;

  /** Returns null if the key is missing. */
  lookup(key: Buffer): Buffer | null;
  /** flags: BPF_ANY (default), BPF_NOEXIST or BPF_EXIST. */
  update(key: Buffer, value: Buffer, flags?: number): void;
  /** Returns false if the key was missing. */
  delete(key: Buffer): boolean;
  /** Returns the first key for null, and null after the last key. */
  nextKey(key: Buffer | null): Buffer | null;

  /** Reads the whole map. Throws EINVAL or ENOTSUPP for map types without batch support. */
  lookupBatch(): { keys: Buffer; values: Buffer; count: number };
  /**
   * Writes keys.length / keySize elements. On failure the error has a
   * `processed` property: the number of elements written before it.
   */
  updateBatch(keys: Buffer, values: Buffer, flags?: number): void;
  /** Returns the number of keys deleted; missing keys are skipped. */
  deleteBatch(keys: Buffer): number;

  /** For program arrays: stores prog at index. */
  setProgram(index: number, prog: NativeProgram): void;
  /** Returns false if the slot was empty. */
  clearProgram(index: number): boolean;

  /**
   * Writes element index of an ARRAY map created with BPF_F_MMAPABLE
   * through a shared mapping, so that a BPF program that reads the element
   * without a helper call never uses a torn value. The first u32 of every
   * element is a sequence word that this method owns: it ignores bytes 0-3
   * of value, makes the word odd, copies bytes 4 onward, then makes it even
   * again (2 after the first write). A reader loads the word, the fields
   * and the word again, and must discard the fields if the word was odd or
   * changed. An odd word on entry, left by a writer that died mid-write,
   * is first rounded up to even.
   *
   * Assumes one writer: two processes that write the same element at once
   * can leave it torn with an even word. The mapping is created on first
   * use and lasts until close() or until the map or its object is closed.
   *
   * Throws a NativeError with syscall 'mmap' if the map is not an
   * mmapable ARRAY or mmap() fails, a TypeError if value.length is not
   * valueSize or valueSize is not a multiple of 4 of at least 8, and a
   * RangeError (code ERR_OUT_OF_RANGE) if index >= maxEntries.
   */
  writeSeqlocked(index: number, value: Buffer): void;
  /**
   * Writes values.length / valueSize consecutive elements from firstIndex
   * on, each as writeSeqlocked does, in one call. While it runs, BPF
   * readers see a mix of old and new elements, but no torn element. Throws
   * like writeSeqlocked, and a TypeError if values.length is not a
   * multiple of valueSize; the RangeError comes before any element is
   * written.
   */
  writeSeqlockedBatch(firstIndex: number, values: Buffer): void;
  /**
   * Copies element index, sequence word included, through the shared
   * mapping, for tests and diagnostics. Throws like writeSeqlocked.
   */
  readMapped(index: number): Buffer;

  pin(path: string): void;
  /**
   * Removes the mapping of writeSeqlocked, if any, and closes a map from
   * openPinnedMap. For a map of a NativeObject the descriptor stays open
   * until the object closes, so a later writeSeqlocked maps it again.
   */
  close(): void;
}

export interface TestRunOptions {
  data: Buffer;
  ctx?: Buffer;
  repeat?: number; // default 1
  /** Room for output data; default data.length + 4096, 0 for none. */
  dataOutSize?: number;
  /** Room for the output context; default ctx.length, 0 for none. */
  ctxOutSize?: number;
  /** With BPF_F_TEST_XDP_LIVE_FRAMES both output sizes default to 0, as the kernel requires. */
  flags?: number;
  cpu?: number; // needs BPF_F_TEST_RUN_ON_CPU in flags
}

export interface TestRunResult {
  retval: number;
  duration: number; // average nanoseconds per repetition
  data: Buffer | null;
  ctx: Buffer | null;
}

export type EndpointNetns = { netnsId: number; device: string; reason?: undefined } | { reason: string; netnsId?: undefined; device?: undefined };

export interface LiveFrame {
  frame: Buffer; // Ethernet frame; at most 3408 bytes on Linux 6.18
  meta?: Buffer; // metadata in front of the frame: 0 to 32 bytes, a multiple of 4
  ifindex: number; // ingress device, in the namespace given to runLive
  rxQueue?: number; // must be below the device's real_num_rx_queues; default 0
}

export interface LiveFrameError {
  index: number; // position in the frames array
  code: string;
  errno: number;
  message: string;
}

export interface NativeProgram {
  readonly name: string;
  readonly type: number;
  readonly expectedAttachType: number;
  readonly fd: number;
  readonly id: number;

  /** Runs BPF_PROG_TEST_RUN on a worker thread. */
  testRun(opts: TestRunOptions): Promise<TestRunResult>;
  /** Synchronous twin of testRun, for many small runs such as fuzzing. */
  testRunSync(opts: TestRunOptions): TestRunResult;

  /**
   * Injects frames into the network stack as if received on ifindex: runs
   * this XDP program on each with BPF_F_TEST_XDP_LIVE_FRAMES, and XDP_PASS
   * hands the frame to the stack. All frames run on one worker thread that
   * enters netns once. A frame the kernel rejects is listed in errors; only
   * a failure to enter netns rejects the Promise.
   */
  runLive(frames: LiveFrame[], netns?: string): Promise<{ sent: number; errors: LiveFrameError[] }>;

  /**
   * runLive for at most 16 frames, on the calling thread, which enters
   * netns for the call and returns the result. Throws a RangeError for
   * more frames, and an Error when netns cannot be entered.
   */
  runLiveNow(frames: LiveFrame[], netns?: string): { sent: number; errors: LiveFrameError[] };

  pin(path: string): void;
}

/**
 * A bpf_link. The attachment lasts while a descriptor or pin of the link
 * exists, so it ends when this handle is garbage collected unless it was
 * pinned.
 */
export interface NativeLink {
  readonly id: number;
  readonly kind: 'xdp' | 'tcx' | 'pinned';
  /** The XDP mode attached; undefined for other links. */
  readonly mode?: 'native' | 'generic';
  /** Throws ERR_ZH_CLOSED after detach() or close(). */
  info(): NativeLinkInfo;
  pin(path: string): void;
  unpin(path: string): void;
  /** Swaps the program atomically. */
  update(prog: NativeProgram): void;
  /** Ends the attachment, even if pinned, and closes the handle. Idempotent. */
  detach(): void;
  /** Closes the handle only; a pinned link stays attached. */
  close(): void;
}

/**
 * A tc attachment. A tcx link ends when this handle is garbage collected;
 * a clsact filter stays until detach().
 */
export interface NativeTcAttachment {
  readonly kind: 'tcx' | 'clsact';
  /**
   * Pins the tcx link. Throws ERR_ZH_NOT_A_LINK for a clsact filter and
   * ERR_ZH_CLOSED once detached.
   */
  pin(path: string): void;
  /**
   * Removes the program. For clsact it also deletes the qdisc if this
   * attachment created it, which removes every other filter on that
   * device too. Idempotent; rejects with ERR_ZH_BUSY while a detach runs.
   */
  detach(): Promise<void>;
}

/**
 * Reader of BPF ring buffer maps. onBatch receives the records of one
 * event loop wakeup in one Buffer. Each record is a u32 ring index (the
 * map's position in the constructor array), a u32 length and `length`
 * bytes padded to a multiple of 8, in host byte order. A batch contains
 * at most RINGBUF_BATCH_MAX_RECORDS records and stops after the record that
 * reaches RINGBUF_BATCH_MAX_BYTES. The rest waits for the next wakeup. An
 * exception thrown by onBatch during polling becomes an uncaught exception.
 */
/** An interface of a network namespace. */
export interface InterfaceInfo {
  ifindex: number;
  name: string;
  linkType: number; // ARPHRD_* in <linux/if_arp.h>, 1 for Ethernet
  kind: string; // the rtnetlink link kind, such as 'veth'; '' for a physical device
}

/**
 * An rtnetlink link notification. 'new' also reports a change of flags,
 * state or name of an interface that already exists.
 */
export interface InterfaceEvent {
  type: 'new' | 'del';
  ifindex: number;
  name: string;
}

export interface NativeInterfaceMonitor {
  /** Polls the socket; while started, the handle keeps the event loop alive. */
  start(): void;
  /** Stops polling and closes the socket. Idempotent. */
  close(): void;
}

export interface NativeRingBuffer {
  /** Polls the rings; while started, the handle keeps the event loop alive. */
  start(): void;
  stop(): void;
  /** Delivers at most one batch now; returns its record count. */
  consume(): number;
  /** Stops polling and frees the reader. Idempotent. */
  close(): void;
}

export interface NativeConstants {
  BPF_MAP_TYPE_HASH: number;
  BPF_MAP_TYPE_ARRAY: number;
  BPF_MAP_TYPE_PROG_ARRAY: number;
  BPF_MAP_TYPE_PERCPU_HASH: number;
  BPF_MAP_TYPE_PERCPU_ARRAY: number;
  BPF_MAP_TYPE_LRU_HASH: number;
  BPF_MAP_TYPE_LRU_PERCPU_HASH: number;
  BPF_MAP_TYPE_RINGBUF: number;
  BPF_PROG_TYPE_SCHED_CLS: number;
  BPF_PROG_TYPE_XDP: number;
  BPF_XDP: number;
  BPF_TCX_INGRESS: number;
  BPF_TCX_EGRESS: number;
  BPF_LINK_TYPE_XDP: number;
  BPF_LINK_TYPE_TCX: number;
  BPF_ANY: number;
  BPF_NOEXIST: number;
  BPF_EXIST: number;
  BPF_F_TEST_RUN_ON_CPU: number;
  BPF_F_TEST_XDP_LIVE_FRAMES: number;
  XDP_ABORTED: number;
  XDP_DROP: number;
  XDP_PASS: number;
  XDP_TX: number;
  XDP_REDIRECT: number;
  RINGBUF_BATCH_MAX_BYTES: number;
  RINGBUF_BATCH_MAX_RECORDS: number;
}

// This file compiles to dist/src/datapath/native.js, three levels below
// the repository root.
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

export const NATIVE_ADDON_PATH = path.join(repoRoot, 'build', 'Release', 'zerohold.node');

let binding: NativeBinding | undefined;

/**
 * Loads the addon on first use, so modules that only need the types work
 * without a build. Throws if the addon is missing or fails to load.
 */
export function loadNative(): NativeBinding {
  if (binding !== undefined) return binding;

  const require = createRequire(import.meta.url);
  try {
    binding = require(NATIVE_ADDON_PATH) as NativeBinding;
  } catch (error) {
    throw new Error(
      `cannot load the native addon ${NATIVE_ADDON_PATH}: ${(error as Error).message}. ` +
        'Build it with npm run build:addon.',
      { cause: error },
    );
  }
  return binding;
}
