// SPDX-License-Identifier: Apache-2.0
// BpfMap methods that access a BPF_F_MMAPABLE array map through a shared
// mapping instead of the bpf() syscall.
#include <bpf/bpf.h>
#include <errno.h>

#include <cstdio>
#include <string>

#include "args.h"
#include "bpf_map.h"
#include "sys_error.h"

namespace zerohold {

namespace {

[[noreturn]] void ThrowRangeError(Napi::Env env, const std::string& message) {
  Napi::RangeError error = Napi::RangeError::New(env, message);
  error.Set("code", "ERR_OUT_OF_RANGE");
  throw error;
}

std::string Hex(uint32_t value) {
  char text[16];
  std::snprintf(text, sizeof(text), "0x%x", value);
  return text;
}

}  // namespace

void BpfMap::CheckSeqlockable(Napi::Env env) const {
  // The kernel would fail mmap() with EINVAL for an array without the flag
  // and ENODEV for other types. Other mmapable types, such as ring buffers,
  // have no elements to lock.
  if (info_.type != BPF_MAP_TYPE_ARRAY ||
      (info_.map_flags & BPF_F_MMAPABLE) == 0) {
    SysError error = MakeSysError("mmap", info_.name, EINVAL);
    error.detail = "map " + info_.name + " has type " +
                   std::to_string(info_.type) + " and map_flags " +
                   Hex(info_.map_flags) +
                   ", but sequence-locked writes need an ARRAY map (type " +
                   std::to_string(BPF_MAP_TYPE_ARRAY) +
                   ") created with BPF_F_MMAPABLE (" + Hex(BPF_F_MMAPABLE) +
                   ")";
    throw ToJsError(env, error);
  }

  // The u32 sequence word needs 4-byte alignment in every element, and at
  // least one field after it.
  if (info_.value_size < 8 || info_.value_size % 4 != 0) {
    ThrowTypeError(env,
                   "value size of map " + info_.name + " is " +
                       std::to_string(info_.value_size) +
                       " bytes, but sequence-locked writes need at least 8 "
                       "bytes and a multiple of 4",
                   "ERR_ZH_VALUE_SIZE");
  }
}

void BpfMap::CheckIndexRange(Napi::Env env, uint32_t first,
                             uint64_t count) const {
  if (first + count <= info_.max_entries) return;

  std::string indexes = count <= 1
                            ? "index " + std::to_string(first) + " is"
                            : "indexes " + std::to_string(first) + " to " +
                                  std::to_string(first + count - 1) + " are";
  ThrowRangeError(env, indexes + " out of range for map " + info_.name +
                           " with max_entries " +
                           std::to_string(info_.max_entries));
}

MappedArray& BpfMap::Mapping(Napi::Env env) {
  // bpf_object__close() closed the descriptor, so drop the mapping too,
  // which releases the map. Fd() then throws.
  // TODO: unmap inside ObjectHandle::Close() instead. Until then the
  // mapping outlives the object's close() until the next call here or
  // until this BpfMap is garbage collected.
  if (owner_ != nullptr && owner_->Get() == nullptr) mapping_.Unmap();
  int fd = Fd(env);

  if (!mapping_.Mapped()) {
    int err = mapping_.Map(fd, info_.value_size, info_.max_entries);
    if (err != 0) ThrowSysError(env, "mmap", info_.name, err);
  }
  return mapping_;
}

void BpfMap::WriteSeqlocked(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t index = Uint32Arg(info, 0, "index");
  Napi::Buffer<uint8_t> value = BufferArg(info, 1, "value");
  CheckSeqlockable(env);
  CheckValue(env, value);
  CheckIndexRange(env, index, 1);

  Mapping(env).WriteSeqlocked(index, value.Data());
}

void BpfMap::WriteSeqlockedBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t first = Uint32Arg(info, 0, "firstIndex");
  Napi::Buffer<uint8_t> values = BufferArg(info, 1, "values");
  CheckSeqlockable(env);

  if (values.Length() % info_.value_size != 0) {
    ThrowTypeError(env,
                   "values for map " + info_.name + " are " +
                       std::to_string(values.Length()) +
                       " bytes, not a multiple of the value size " +
                       std::to_string(info_.value_size),
                   "ERR_ZH_VALUE_SIZE");
  }
  uint64_t count = values.Length() / info_.value_size;
  CheckIndexRange(env, first, count);

  MappedArray& mapping = Mapping(env);
  for (uint64_t i = 0; i < count; i++) {
    mapping.WriteSeqlocked(static_cast<uint32_t>(first + i),
                           values.Data() + i * info_.value_size);
  }
}

Napi::Value BpfMap::ReadMapped(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t index = Uint32Arg(info, 0, "index");
  CheckSeqlockable(env);
  CheckIndexRange(env, index, 1);

  // A copy, because a Buffer over the mapping would dangle after close().
  Napi::Buffer<uint8_t> value =
      Napi::Buffer<uint8_t>::New(env, info_.value_size);
  Mapping(env).Read(index, value.Data());
  return value;
}

}  // namespace zerohold
