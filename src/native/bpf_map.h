// SPDX-License-Identifier: Apache-2.0
#ifndef ZEROHOLD_NATIVE_BPF_MAP_H
#define ZEROHOLD_NATIVE_BPF_MAP_H

#include <bpf/libbpf.h>
#include <napi.h>

#include <cstdint>
#include <memory>
#include <string>

#include "mapped_array.h"
#include "object_handle.h"
#include "unique_fd.h"

namespace zerohold {

struct MapInfo {
  std::string name;
  uint32_t type = 0;
  uint32_t key_size = 0;
  uint32_t value_size = 0;
  uint32_t max_entries = 0;
  uint32_t map_flags = 0;
  uint32_t id = 0;
  // Bytes of one value as user space passes it: value_size, or for per-CPU
  // maps value_size rounded up to 8 times the number of possible CPUs.
  uint32_t value_buffer_size = 0;
};

// A map of a loaded BpfObject or a map opened from its pin. Element
// operations are single fast syscalls, so they run synchronously.
class BpfMap : public Napi::ObjectWrap<BpfMap> {
 public:
  static void Init(Napi::Env env, Napi::Object exports);

  // Wraps a map of a loaded object; the handle keeps the object open.
  static Napi::Object FromObject(Napi::Env env,
                                 std::shared_ptr<ObjectHandle> owner,
                                 const bpf_map* map);

  // Returns the BpfMap inside value; throws a TypeError naming the argument
  // if value is something else.
  static BpfMap* FromValue(Napi::Env env, Napi::Value value, const char* name);

  explicit BpfMap(const Napi::CallbackInfo& info);

  // Throws if the map or its object is closed.
  int Fd(Napi::Env env) const;

  const MapInfo& Info() const { return info_; }

 private:
  static Napi::Value OpenPinnedMap(const Napi::CallbackInfo& info);

  Napi::Value Name(const Napi::CallbackInfo& info);
  Napi::Value Type(const Napi::CallbackInfo& info);
  Napi::Value KeySize(const Napi::CallbackInfo& info);
  Napi::Value ValueSize(const Napi::CallbackInfo& info);
  Napi::Value MaxEntries(const Napi::CallbackInfo& info);
  Napi::Value GetFd(const Napi::CallbackInfo& info);
  Napi::Value Id(const Napi::CallbackInfo& info);
  Napi::Value ValueBufferSize(const Napi::CallbackInfo& info);
  Napi::Value MapFlags(const Napi::CallbackInfo& info);

  Napi::Value Lookup(const Napi::CallbackInfo& info);
  void Update(const Napi::CallbackInfo& info);
  Napi::Value Delete(const Napi::CallbackInfo& info);
  Napi::Value NextKey(const Napi::CallbackInfo& info);
  Napi::Value LookupBatch(const Napi::CallbackInfo& info);
  void UpdateBatch(const Napi::CallbackInfo& info);
  Napi::Value DeleteBatch(const Napi::CallbackInfo& info);
  void SetProgram(const Napi::CallbackInfo& info);
  Napi::Value ClearProgram(const Napi::CallbackInfo& info);
  void Pin(const Napi::CallbackInfo& info);
  void Close(const Napi::CallbackInfo& info);

  // Access through a shared mapping, defined in bpf_map_mapped.cc.
  void WriteSeqlocked(const Napi::CallbackInfo& info);
  void WriteSeqlockedBatch(const Napi::CallbackInfo& info);
  Napi::Value ReadMapped(const Napi::CallbackInfo& info);

  void CheckKey(Napi::Env env, const Napi::Buffer<uint8_t>& key) const;
  void CheckValue(Napi::Env env, const Napi::Buffer<uint8_t>& value) const;

  // Returns the number of keys in a batch buffer after checking its size.
  uint32_t BatchCount(Napi::Env env, const Napi::Buffer<uint8_t>& keys) const;

  // Throws unless the map is an ARRAY with BPF_F_MMAPABLE and its value
  // size fits a u32 sequence word and fields: at least 8, a multiple of 4.
  void CheckSeqlockable(Napi::Env env) const;
  // Throws unless the map is a prog array with 4-byte keys and values.
  void CheckProgArray(Napi::Env env) const;

  // Throws a RangeError unless elements [first, first + count) exist.
  void CheckIndexRange(Napi::Env env, uint32_t first, uint64_t count) const;

  // Returns mapping_, mapped on first use. Throws if the map is closed,
  // after unmapping if the owning object was closed.
  MappedArray& Mapping(Napi::Env env);

  // Exactly one owns the descriptor: owner_ for an object's map (the fd is
  // libbpf's), own_fd_ for a pinned map.
  std::shared_ptr<ObjectHandle> owner_;
  UniqueFd own_fd_;
  int fd_ = -1;
  MapInfo info_;

  // Empty until the first mapped access. It must not outlive the map's
  // descriptor, because the mapping keeps the kernel map alive.
  MappedArray mapping_;
};

}  // namespace zerohold

#endif  // ZEROHOLD_NATIVE_BPF_MAP_H
