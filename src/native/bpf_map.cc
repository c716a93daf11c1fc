// SPDX-License-Identifier: Apache-2.0
#include "bpf_map.h"

#include <bpf/bpf.h>
#include <errno.h>

#include <algorithm>
#include <vector>

#include "addon_data.h"
#include "args.h"
#include "bpf_program.h"
#include "pinned_object.h"
#include "sys_error.h"

namespace zerohold {

namespace {

// Entries requested per bpf_map_lookup_batch() call. Doubled when a hash
// bucket contains more entries than that, which the kernel reports as
// ENOSPC.
constexpr uint32_t kLookupBatchChunk = 4096;

// Everything a new BpfMap takes over, passed through an External so that
// JS cannot call the constructor with arguments of its own.
struct BpfMapInit {
  std::shared_ptr<ObjectHandle> owner;
  UniqueFd own_fd;
  int fd = -1;
  MapInfo info;
};

bool IsPerCpu(uint32_t type) {
  switch (type) {
    case BPF_MAP_TYPE_PERCPU_HASH:
    case BPF_MAP_TYPE_PERCPU_ARRAY:
    case BPF_MAP_TYPE_LRU_PERCPU_HASH:
    case BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE:
      return true;
    default:
      return false;
  }
}

// Fills everything but the name from the kernel's view of the map, which
// is authoritative even for a map that libbpf reused from a pin.
void QueryMapInfo(Napi::Env env, int fd, MapInfo* info) {
  bpf_map_info kernel_info = {};
  uint32_t length = sizeof(kernel_info);
  int err = bpf_obj_get_info_by_fd(fd, &kernel_info, &length);
  if (err < 0) ThrowSysError(env, "bpf_obj_get_info_by_fd", info->name, err);

  info->type = kernel_info.type;
  info->key_size = kernel_info.key_size;
  info->value_size = kernel_info.value_size;
  info->max_entries = kernel_info.max_entries;
  info->map_flags = kernel_info.map_flags;
  info->id = kernel_info.id;
  if (info->name.empty()) info->name = kernel_info.name;

  info->value_buffer_size = info->value_size;
  if (IsPerCpu(info->type)) {
    int cpus = libbpf_num_possible_cpus();
    if (cpus < 0) ThrowSysError(env, "libbpf_num_possible_cpus", "", cpus);
    info->value_buffer_size = ((info->value_size + 7) & ~7u) * cpus;
  }
}

Napi::Object Wrap(Napi::Env env, BpfMapInit* init) {
  return GetAddonData(env).bpf_map.New(
      {Napi::External<BpfMapInit>::New(env, init)});
}

}  // namespace

void BpfMap::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function constructor = DefineClass(
      env, "BpfMap",
      {
          InstanceAccessor<&BpfMap::Name>("name"),
          InstanceAccessor<&BpfMap::Type>("type"),
          InstanceAccessor<&BpfMap::KeySize>("keySize"),
          InstanceAccessor<&BpfMap::ValueSize>("valueSize"),
          InstanceAccessor<&BpfMap::MaxEntries>("maxEntries"),
          InstanceAccessor<&BpfMap::GetFd>("fd"),
          InstanceAccessor<&BpfMap::Id>("id"),
          InstanceAccessor<&BpfMap::ValueBufferSize>("valueBufferSize"),
          InstanceAccessor<&BpfMap::MapFlags>("mapFlags"),
          InstanceMethod<&BpfMap::Lookup>("lookup"),
          InstanceMethod<&BpfMap::Update>("update"),
          InstanceMethod<&BpfMap::Delete>("delete"),
          InstanceMethod<&BpfMap::NextKey>("nextKey"),
          InstanceMethod<&BpfMap::LookupBatch>("lookupBatch"),
          InstanceMethod<&BpfMap::UpdateBatch>("updateBatch"),
          InstanceMethod<&BpfMap::DeleteBatch>("deleteBatch"),
          InstanceMethod<&BpfMap::SetProgram>("setProgram"),
          InstanceMethod<&BpfMap::ClearProgram>("clearProgram"),
          InstanceMethod<&BpfMap::Pin>("pin"),
          InstanceMethod<&BpfMap::Close>("close"),
          InstanceMethod<&BpfMap::WriteSeqlocked>("writeSeqlocked"),
          InstanceMethod<&BpfMap::WriteSeqlockedBatch>("writeSeqlockedBatch"),
          InstanceMethod<&BpfMap::ReadMapped>("readMapped"),
      });
  GetAddonData(env).bpf_map = Napi::Persistent(constructor);

  exports.Set("openPinnedMap", Napi::Function::New<OpenPinnedMap>(
                                   env, "openPinnedMap"));
}

Napi::Object BpfMap::FromObject(Napi::Env env,
                                std::shared_ptr<ObjectHandle> owner,
                                const bpf_map* map) {
  BpfMapInit init;
  init.info.name = bpf_map__name(map);
  init.fd = bpf_map__fd(map);
  if (init.fd < 0) {
    ThrowError(env, "map " + init.info.name + " has no file descriptor: " +
                        owner->FileName() + " did not load",
               "ERR_ZH_NOT_LOADED");
  }

  QueryMapInfo(env, init.fd, &init.info);
  init.owner = std::move(owner);
  return Wrap(env, &init);
}

Napi::Value BpfMap::OpenPinnedMap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = StringArg(info, 0, "path");

  BpfMapInit init;
  init.own_fd = OpenPinned(env, path, kBpfMapKind);
  init.fd = init.own_fd.Get();
  QueryMapInfo(env, init.fd, &init.info);
  return Wrap(env, &init);
}

BpfMap* BpfMap::FromValue(Napi::Env env, Napi::Value value,
                          const char* name) {
  if (!value.IsObject() ||
      !value.As<Napi::Object>().InstanceOf(GetAddonData(env).bpf_map.Value())) {
    ThrowTypeError(env, std::string(name) + " must be a BpfMap",
                   "ERR_INVALID_ARG_TYPE");
  }
  return Unwrap(value.As<Napi::Object>());
}

BpfMap::BpfMap(const Napi::CallbackInfo& info) : ObjectWrap(info) {
  if (!info[0].IsExternal()) {
    ThrowTypeError(info.Env(),
                   "BpfMap cannot be constructed directly: use "
                   "BpfObject.map() or openPinnedMap()",
                   "ERR_ILLEGAL_CONSTRUCTOR");
  }

  BpfMapInit* init = info[0].As<Napi::External<BpfMapInit>>().Data();
  owner_ = std::move(init->owner);
  own_fd_ = std::move(init->own_fd);
  fd_ = init->fd;
  info_ = std::move(init->info);
}

int BpfMap::Fd(Napi::Env env) const {
  if (owner_ != nullptr && owner_->Get() == nullptr) {
    ThrowError(env,
               "map " + info_.name + " is closed because BPF object " +
                   owner_->FileName() + " was closed",
               "ERR_ZH_CLOSED");
  }
  if (owner_ == nullptr && !own_fd_.Valid()) {
    ThrowError(env, "map " + info_.name + " is closed", "ERR_ZH_CLOSED");
  }
  return fd_;
}

Napi::Value BpfMap::Name(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), info_.name);
}

Napi::Value BpfMap::Type(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), info_.type);
}

Napi::Value BpfMap::KeySize(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), info_.key_size);
}

Napi::Value BpfMap::ValueSize(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), info_.value_size);
}

Napi::Value BpfMap::MaxEntries(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), info_.max_entries);
}

Napi::Value BpfMap::GetFd(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), Fd(info.Env()));
}

Napi::Value BpfMap::Id(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), info_.id);
}

Napi::Value BpfMap::ValueBufferSize(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), info_.value_buffer_size);
}

Napi::Value BpfMap::MapFlags(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), info_.map_flags);
}

void BpfMap::CheckKey(Napi::Env env, const Napi::Buffer<uint8_t>& key) const {
  if (key.Length() == info_.key_size) return;
  ThrowTypeError(env,
                 "key for map " + info_.name + " is " +
                     std::to_string(key.Length()) + " bytes, expected " +
                     std::to_string(info_.key_size),
                 "ERR_ZH_KEY_SIZE");
}

void BpfMap::CheckValue(Napi::Env env,
                        const Napi::Buffer<uint8_t>& value) const {
  if (value.Length() == info_.value_buffer_size) return;
  ThrowTypeError(env,
                 "value for map " + info_.name + " is " +
                     std::to_string(value.Length()) + " bytes, expected " +
                     std::to_string(info_.value_buffer_size),
                 "ERR_ZH_VALUE_SIZE");
}

uint32_t BpfMap::BatchCount(Napi::Env env,
                            const Napi::Buffer<uint8_t>& keys) const {
  if (info_.key_size == 0 || keys.Length() % info_.key_size != 0 ||
      keys.Length() / info_.key_size > UINT32_MAX) {
    ThrowTypeError(env,
                   "keys for map " + info_.name + " are " +
                       std::to_string(keys.Length()) +
                       " bytes, not a multiple of the key size " +
                       std::to_string(info_.key_size),
                   "ERR_ZH_KEY_SIZE");
  }
  return static_cast<uint32_t>(keys.Length() / info_.key_size);
}

Napi::Value BpfMap::Lookup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Buffer<uint8_t> key = BufferArg(info, 0, "key");
  CheckKey(env, key);
  int fd = Fd(env);

  Napi::Buffer<uint8_t> value =
      Napi::Buffer<uint8_t>::New(env, info_.value_buffer_size);
  int err = bpf_map_lookup_elem(fd, key.Data(), value.Data());
  if (err == -ENOENT) return env.Null();
  if (err < 0) ThrowSysError(env, "bpf_map_lookup_elem", info_.name, err);
  return value;
}

void BpfMap::Update(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Buffer<uint8_t> key = BufferArg(info, 0, "key");
  Napi::Buffer<uint8_t> value = BufferArg(info, 1, "value");
  uint32_t flags = OptionalUint32Arg(info, 2, "flags", BPF_ANY);
  CheckKey(env, key);
  CheckValue(env, value);
  int fd = Fd(env);

  int err = bpf_map_update_elem(fd, key.Data(), value.Data(), flags);
  if (err < 0) ThrowSysError(env, "bpf_map_update_elem", info_.name, err);
}

Napi::Value BpfMap::Delete(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Buffer<uint8_t> key = BufferArg(info, 0, "key");
  CheckKey(env, key);
  int fd = Fd(env);

  int err = bpf_map_delete_elem(fd, key.Data());
  if (err == -ENOENT) return Napi::Boolean::New(env, false);
  if (err < 0) ThrowSysError(env, "bpf_map_delete_elem", info_.name, err);
  return Napi::Boolean::New(env, true);
}

Napi::Value BpfMap::NextKey(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const void* key = nullptr;
  if (!info[0].IsNull() && !info[0].IsUndefined()) {
    Napi::Buffer<uint8_t> buffer = BufferArg(info, 0, "key");
    CheckKey(env, buffer);
    key = buffer.Data();
  }
  int fd = Fd(env);

  Napi::Buffer<uint8_t> next = Napi::Buffer<uint8_t>::New(env, info_.key_size);
  int err = bpf_map_get_next_key(fd, key, next.Data());
  if (err == -ENOENT) return env.Null();
  if (err < 0) ThrowSysError(env, "bpf_map_get_next_key", info_.name, err);
  return next;
}

Napi::Value BpfMap::LookupBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Fd(env);

  // The batch tokens are opaque to user space. Hash maps store a bucket
  // index and array maps a key there, so key size (at least 8) fits both.
  size_t token_size = std::max<size_t>(info_.key_size, 8);
  std::vector<uint8_t> in_token(token_size);
  std::vector<uint8_t> out_token(token_size);
  bool first = true;

  bpf_map_batch_opts opts = {};
  opts.sz = sizeof(opts);

  std::vector<uint8_t> keys;
  std::vector<uint8_t> values;
  size_t count = 0;
  uint32_t chunk = std::clamp(info_.max_entries, 1u, kLookupBatchChunk);

  for (;;) {
    keys.resize((count + chunk) * info_.key_size);
    values.resize((count + chunk) * info_.value_buffer_size);

    uint32_t returned = chunk;
    int err = bpf_map_lookup_batch(
        fd, first ? nullptr : in_token.data(), out_token.data(),
        keys.data() + count * info_.key_size,
        values.data() + count * info_.value_buffer_size, &returned, &opts);

    // ENOSPC with nothing returned: one hash bucket contains more entries
    // than chunk. Retry the same position with room for more.
    if (err == -ENOSPC && returned == 0 && chunk < info_.max_entries) {
      chunk = static_cast<uint32_t>(
          std::min<uint64_t>(uint64_t{chunk} * 2, info_.max_entries));
      continue;
    }
    if (err < 0 && err != -ENOENT) {
      ThrowSysError(env, "bpf_map_lookup_batch", info_.name, err);
    }

    count += returned;
    if (err == -ENOENT) break;

    in_token.swap(out_token);
    first = false;
  }

  Napi::Object result = Napi::Object::New(env);
  result.Set("keys", Napi::Buffer<uint8_t>::Copy(env, keys.data(),
                                                 count * info_.key_size));
  result.Set("values",
             Napi::Buffer<uint8_t>::Copy(env, values.data(),
                                         count * info_.value_buffer_size));
  result.Set("count", Napi::Number::New(env, static_cast<double>(count)));
  return result;
}

void BpfMap::UpdateBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Buffer<uint8_t> keys = BufferArg(info, 0, "keys");
  Napi::Buffer<uint8_t> values = BufferArg(info, 1, "values");
  uint32_t flags = OptionalUint32Arg(info, 2, "flags", BPF_ANY);
  uint32_t count = BatchCount(env, keys);

  uint64_t expected = uint64_t{count} * info_.value_buffer_size;
  if (values.Length() != expected) {
    ThrowTypeError(env,
                   "values for map " + info_.name + " are " +
                       std::to_string(values.Length()) + " bytes, expected " +
                       std::to_string(expected) + " for " +
                       std::to_string(count) + " keys",
                   "ERR_ZH_VALUE_SIZE");
  }
  int fd = Fd(env);
  if (count == 0) return;

  bpf_map_batch_opts opts = {};
  opts.sz = sizeof(opts);
  opts.elem_flags = flags;

  // On failure the kernel reports how many elements it wrote before the
  // failing one; the caller needs that to know what is in the map.
  uint32_t processed = count;
  int err = bpf_map_update_batch(fd, keys.Data(), values.Data(), &processed,
                                 &opts);
  if (err < 0) {
    Napi::Error error =
        ToJsError(env, MakeSysError("bpf_map_update_batch", info_.name, err));
    error.Set("processed", Napi::Number::New(env, processed));
    throw error;
  }
}

Napi::Value BpfMap::DeleteBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Buffer<uint8_t> keys = BufferArg(info, 0, "keys");
  uint32_t total = BatchCount(env, keys);
  int fd = Fd(env);

  bpf_map_batch_opts opts = {};
  opts.sz = sizeof(opts);

  // The kernel stops at the first missing key and reports how many it
  // deleted before it. A missing key is skipped, so the keys after it
  // are still deleted.
  uint32_t offset = 0;
  uint32_t deleted = 0;
  while (offset < total) {
    uint32_t processed = total - offset;
    int err = bpf_map_delete_batch(
        fd, keys.Data() + uint64_t{offset} * info_.key_size, &processed,
        &opts);
    deleted += processed;
    if (err == 0) break;

    if (err != -ENOENT) {
      Napi::Error error = ToJsError(
          env, MakeSysError("bpf_map_delete_batch", info_.name, err));
      error.Set("deleted", Napi::Number::New(env, deleted));
      throw error;
    }
    offset += processed + 1;
  }
  return Napi::Number::New(env, deleted);
}

void BpfMap::CheckProgArray(Napi::Env env) const {
  // The calls below pass 4-byte key and value, which the kernel would read
  // past for a map with larger ones.
  if (info_.type == BPF_MAP_TYPE_PROG_ARRAY && info_.key_size == 4 &&
      info_.value_size == 4) {
    return;
  }
  ThrowTypeError(env,
                 "map " + info_.name + " has type " +
                     std::to_string(info_.type) + ", but programs go into a "
                     "BPF_MAP_TYPE_PROG_ARRAY (type " +
                     std::to_string(BPF_MAP_TYPE_PROG_ARRAY) + ")",
                 "ERR_ZH_MAP_TYPE");
}

void BpfMap::SetProgram(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckProgArray(env);
  uint32_t index = Uint32Arg(info, 0, "index");
  BpfProgram* program = BpfProgram::FromValue(env, info[1], "prog");
  uint32_t prog_fd = program->Fd(env);
  int fd = Fd(env);

  int err = bpf_map_update_elem(fd, &index, &prog_fd, BPF_ANY);
  if (err < 0) ThrowSysError(env, "bpf_map_update_elem", info_.name, err);
}

Napi::Value BpfMap::ClearProgram(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckProgArray(env);
  uint32_t index = Uint32Arg(info, 0, "index");
  int fd = Fd(env);

  int err = bpf_map_delete_elem(fd, &index);
  if (err == -ENOENT) return Napi::Boolean::New(env, false);
  if (err < 0) ThrowSysError(env, "bpf_map_delete_elem", info_.name, err);
  return Napi::Boolean::New(env, true);
}

void BpfMap::Pin(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = StringArg(info, 0, "path");
  int fd = Fd(env);

  int err = bpf_obj_pin(fd, path.c_str());
  if (err < 0) ThrowSysError(env, "bpf_obj_pin", path, err);
}

void BpfMap::Close(const Napi::CallbackInfo&) {
  mapping_.Unmap();

  // A map of an object shares libbpf's descriptor, which only closing the
  // object releases.
  if (owner_ == nullptr) own_fd_.Reset();
}

}  // namespace zerohold
