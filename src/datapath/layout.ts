// Byte layouts of the structs in bpf/include/zerohold.h. A test compares
// every size and offset here with the BTF of the compiled object, so the two
// cannot drift apart silently.

export const MAX_FRAME = 3408;

export const ServiceState = {
  Unmanaged: 0,
  Warm: 1,
  Cold: 2,
} as const;
export type ServiceStateValue = (typeof ServiceState)[keyof typeof ServiceState];

export const ServiceFlags = {
  DropOnly: 1 << 0,
} as const;

export const Hook = {
  Xdp: 1,
  Tc: 2,
  ChainXdp: 3,
  ChainTc: 4,
} as const;

export const HeldFlags = {
  Ipv6: 1 << 0,
  Vlan: 1 << 1,
} as const;

export const GlobalStat = {
  BadService: 0,
  ChainBadMeta: 1,
  ChainUnmanaged: 2,
  Reinjected: 3,
} as const;
export const GLOBAL_STAT_COUNT = 4;

export const ChainPoint = {
  XdpNodePort: 1,
  TcNodePort: 2,
  TcLxc: 3,
} as const;

// Return values of zh_tc_udp_bound (enum zh_udp_bound_result).
export const UdpBoundResult = {
  Unbound: 0,
  Bound: 1,
  Malformed: 2,
} as const;

export const REINJECT_MAGIC = 0x7a687231;
export const CHAIN_META_MAGIC = 0x7a686331;

export interface StructLayout {
  size: number;
  members: Record<string, number>;
}

export const FrontendKey: StructLayout = {
  size: 20,
  members: { addr: 0, port: 16, proto: 18, pad: 19 },
};

export const FrontendValue: StructLayout = {
  size: 4,
  members: { service_id: 0 },
};

export const Service: StructLayout = {
  size: 16,
  members: { state: 0, flags: 4, wake_interval_ns: 8 },
};

export const WakeState: StructLayout = {
  size: 8,
  members: { last_wake_ns: 0 },
};

export const HoldBudget: StructLayout = {
  size: 24,
  members: { rate: 0, pad: 4, tokens: 8, refill_ns: 16 },
};

export const Config: StructLayout = {
  size: 8,
  members: { any_port_frontends: 0, index_mask: 4 },
};

export const FrontendSlot: StructLayout = {
  size: 24,
  members: { addr: 0, port: 16, proto: 18, valid: 19, service_id: 20 },
};

export const FrontendBucket: StructLayout = {
  size: 64,
  members: { seq: 0, overflow: 4, slot: 8, pad: 56 },
};

// Counter names in declaration order; each is a u64.
export const SERVICE_STAT_FIELDS = [
  'held_frames',
  'held_bytes',
  'too_large',
  'ringbuf_full',
  'fragments',
  'wake_events',
  'wake_lost',
  'passed_cold',
  'dropped_only',
  'warm_packets',
  'warm_last_seen_ns',
  'no_agent',
  'dropped_cold',
  'held_limited',
] as const;
export type ServiceStatField = (typeof SERVICE_STAT_FIELDS)[number];

export const ServiceStats: StructLayout = {
  size: SERVICE_STAT_FIELDS.length * 8,
  members: Object.fromEntries(SERVICE_STAT_FIELDS.map((name, i) => [name, i * 8])),
};

export const HeldHeader: StructLayout = {
  size: 40,
  members: {
    timestamp_ns: 0,
    service_id: 8,
    ifindex: 12,
    rx_queue: 16,
    frame_len: 20,
    hook: 22,
    l4_proto: 23,
    l3_offset: 24,
    l4_offset: 26,
    flags: 28,
    vlan_proto: 30,
    vlan_tci: 32,
    pad: 34,
  },
};

export const WakeEvent: StructLayout = {
  size: 56,
  members: {
    timestamp_ns: 0,
    service_id: 8,
    ifindex: 12,
    src_addr: 16,
    dst_addr: 32,
    src_port: 48,
    dst_port: 50,
    l4_proto: 52,
    hook: 53,
    pad: 54,
  },
};

export const Liveness: StructLayout = {
  size: 8,
  members: { deadline_ns: 0 },
};

export const ReinjectMeta: StructLayout = {
  size: 8,
  members: { magic: 0, service_id: 4 },
};

export const ChainMeta: StructLayout = {
  size: 16,
  members: { magic: 0, service_id: 4, point: 8, pad: 12 },
};

export const MapName: StructLayout = {
  size: 16,
  members: { name: 0 },
};

export const MapLayoutDigests: StructLayout = {
  size: 32,
  members: { key_digest: 0, value_digest: 16 },
};

// Struct names in zerohold.h, for the BTF comparison.
export const STRUCTS: Record<string, StructLayout> = {
  zh_frontend_key: FrontendKey,
  zh_frontend_value: FrontendValue,
  zh_service: Service,
  zh_wake_state: WakeState,
  zh_hold_budget: HoldBudget,
  zh_config: Config,
  zh_liveness: Liveness,
  zh_fe_slot: FrontendSlot,
  zh_fe_bucket: FrontendBucket,
  zh_service_stats: ServiceStats,
  zh_held_hdr: HeldHeader,
  zh_wake_event: WakeEvent,
  zh_reinject_meta: ReinjectMeta,
  zh_chain_meta: ChainMeta,
  zh_map_name: MapName,
  zh_map_layout: MapLayoutDigests,
};
