// SPDX-License-Identifier: Apache-2.0
#include "bpf_object.h"

#include <bpf/btf.h>
#include <errno.h>

#include "args.h"
#include "bpf_map.h"
#include "bpf_program.h"
#include "btf_layout.h"
#include "libbpf_log.h"
#include "object_load.h"
#include "promise_worker.h"
#include "sys_error.h"

namespace zerohold {

void BpfObject::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function constructor = DefineClass(
      env, "BpfObject",
      {
          InstanceAccessor<&BpfObject::Path>("path"),
          InstanceMethod<&BpfObject::ProgramNames>("programNames"),
          InstanceMethod<&BpfObject::MapNames>("mapNames"),
          InstanceMethod<&BpfObject::MapDefinition>("mapDefinition"),
          InstanceMethod<&BpfObject::SetProgramType>("setProgramType"),
          InstanceMethod<&BpfObject::SetExpectedAttachType>(
              "setExpectedAttachType"),
          InstanceMethod<&BpfObject::SetAutoload>("setAutoload"),
          InstanceMethod<&BpfObject::SetMaxEntries>("setMaxEntries"),
          InstanceMethod<&BpfObject::SetPinPath>("setPinPath"),
          InstanceMethod<&BpfObject::Load>("load"),
          InstanceMethod<&BpfObject::Map>("map"),
          InstanceMethod<&BpfObject::Program>("program"),
          InstanceMethod<&BpfObject::StructLayout>("structLayout"),
          InstanceMethod<&BpfObject::Close>("close"),
      });
  exports.Set("BpfObject", constructor);
}

BpfObject::BpfObject(const Napi::CallbackInfo& info) : ObjectWrap(info) {
  Napi::Env env = info.Env();
  std::string path = StringArg(info, 0, "path");

  LibbpfLogCapture capture;
  bpf_object* object = bpf_object__open_file(path.c_str(), nullptr);
  if (object == nullptr) {
    SysError error = MakeSysError("bpf_object__open_file", path, errno);
    error.detail = capture.Text();
    throw ToJsError(env, error);
  }
  handle_ = std::make_shared<ObjectHandle>(object, std::move(path));
}

bpf_program* BpfObject::FindProgram(Napi::Env env,
                                    const std::string& name) const {
  bpf_program* program =
      bpf_object__find_program_by_name(handle_->Use(env), name.c_str());
  if (program == nullptr) {
    ThrowTypeError(env,
                   "program " + name + " not found in " + handle_->FileName(),
                   "ERR_ZH_UNKNOWN_PROGRAM");
  }
  return program;
}

bpf_map* BpfObject::FindMap(Napi::Env env, const std::string& name) const {
  bpf_map* map = bpf_object__find_map_by_name(handle_->Use(env), name.c_str());
  if (map == nullptr) {
    ThrowTypeError(env, "map " + name + " not found in " + handle_->FileName(),
                   "ERR_ZH_UNKNOWN_MAP");
  }
  return map;
}

void BpfObject::RequireNotLoaded(Napi::Env env, const char* method) const {
  handle_->Use(env);
  if (!handle_->loaded) return;
  ThrowError(env,
             std::string(method) + " must be called before load() of " +
                 handle_->FileName(),
             "ERR_ZH_ALREADY_LOADED");
}

void BpfObject::RequireLoaded(Napi::Env env, const char* method) const {
  handle_->Use(env);
  if (handle_->loaded) return;
  ThrowError(env,
             std::string(method) + " must be called after load() of " +
                 handle_->FileName(),
             "ERR_ZH_NOT_LOADED");
}

Napi::Value BpfObject::Path(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), handle_->Path());
}

Napi::Value BpfObject::ProgramNames(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_object* object = handle_->Use(env);

  Napi::Array names = Napi::Array::New(env);
  bpf_program* program;
  uint32_t index = 0;
  bpf_object__for_each_program(program, object) {
    names.Set(index++, bpf_program__name(program));
  }
  return names;
}

Napi::Value BpfObject::MapNames(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_object* object = handle_->Use(env);

  Napi::Array names = Napi::Array::New(env);
  bpf_map* map;
  uint32_t index = 0;
  bpf_object__for_each_map(map, object) {
    names.Set(index++, bpf_map__name(map));
  }
  return names;
}

void BpfObject::SetProgramType(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = StringArg(info, 0, "prog");
  uint32_t type = Uint32Arg(info, 1, "type");
  RequireNotLoaded(env, "setProgramType()");

  int err = bpf_program__set_type(FindProgram(env, name),
                                  static_cast<bpf_prog_type>(type));
  if (err < 0) ThrowSysError(env, "bpf_program__set_type", name, err);
}

void BpfObject::SetExpectedAttachType(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = StringArg(info, 0, "prog");
  uint32_t type = Uint32Arg(info, 1, "type");
  RequireNotLoaded(env, "setExpectedAttachType()");

  int err = bpf_program__set_expected_attach_type(
      FindProgram(env, name), static_cast<bpf_attach_type>(type));
  if (err < 0) {
    ThrowSysError(env, "bpf_program__set_expected_attach_type", name, err);
  }
}

void BpfObject::SetAutoload(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = StringArg(info, 0, "prog");
  bool autoload = BoolArg(info, 1, "autoload");
  RequireNotLoaded(env, "setAutoload()");

  int err = bpf_program__set_autoload(FindProgram(env, name), autoload);
  if (err < 0) ThrowSysError(env, "bpf_program__set_autoload", name, err);
}

// Returns the definition that libbpf creates the map from, and that a
// pinned map must match to be reused. It includes setMaxEntries() changes.
// The layouts are right only before load(), because bpf_map__reuse_fd()
// sets a reused map's BTF type ids to those of the pinned map's own BTF.
Napi::Value BpfObject::MapDefinition(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = StringArg(info, 0, "map");
  const struct bpf_map* map = FindMap(env, name);

  Napi::Object definition = Napi::Object::New(env);
  definition.Set("type", Napi::Number::New(env, bpf_map__type(map)));
  definition.Set("keySize", Napi::Number::New(env, bpf_map__key_size(map)));
  definition.Set("valueSize", Napi::Number::New(env, bpf_map__value_size(map)));
  definition.Set("maxEntries", Napi::Number::New(env, bpf_map__max_entries(map)));
  definition.Set("mapFlags", Napi::Number::New(env, bpf_map__map_flags(map)));

  const struct btf* btf = bpf_object__btf(handle_->Use(env));
  definition.Set("keyLayout", Napi::String::New(env, BtfLayout(btf, bpf_map__btf_key_type_id(map))));
  definition.Set("valueLayout", Napi::String::New(env, BtfLayout(btf, bpf_map__btf_value_type_id(map))));
  return definition;
}

void BpfObject::SetMaxEntries(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = StringArg(info, 0, "map");
  uint32_t max_entries = Uint32Arg(info, 1, "maxEntries");
  RequireNotLoaded(env, "setMaxEntries()");

  int err = bpf_map__set_max_entries(FindMap(env, name), max_entries);
  if (err < 0) ThrowSysError(env, "bpf_map__set_max_entries", name, err);
}

void BpfObject::SetPinPath(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = StringArg(info, 0, "map");
  std::string path = StringArg(info, 1, "path");
  RequireNotLoaded(env, "setPinPath()");

  // libbpf then reuses a map already pinned there if its type, sizes and
  // flags match, fails the load if they do not, and pins a new map after
  // creating it.
  int err = bpf_map__set_pin_path(FindMap(env, name), path.c_str());
  if (err < 0) ThrowSysError(env, "bpf_map__set_pin_path", name, err);
}

Napi::Value BpfObject::Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseOrRejection(env, [&] {
    RequireNotLoaded(env, "load()");
    return StartObjectLoad(env, handle_);
  });
}

Napi::Value BpfObject::Map(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = StringArg(info, 0, "name");
  RequireLoaded(env, "map()");
  return BpfMap::FromObject(env, handle_, FindMap(env, name));
}

Napi::Value BpfObject::Program(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = StringArg(info, 0, "name");
  RequireLoaded(env, "program()");
  return BpfProgram::FromObject(env, handle_, FindProgram(env, name));
}

Napi::Value BpfObject::StructLayout(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = StringArg(info, 0, "name");
  bpf_object* object = handle_->Use(env);

  const btf* types = bpf_object__btf(object);
  if (types == nullptr) return env.Null();
  int id = btf__find_by_name_kind(types, name.c_str(), BTF_KIND_STRUCT);
  if (id < 0) return env.Null();
  const btf_type* type = btf__type_by_id(types, id);

  const btf_member* members = btf_members(type);
  Napi::Array layout_members = Napi::Array::New(env, btf_vlen(type));
  for (uint32_t i = 0; i < btf_vlen(type); i++) {
    long size = btf__resolve_size(types, members[i].type);
    if (size < 0) ThrowSysError(env, "btf__resolve_size", name, size);

    Napi::Object member = Napi::Object::New(env);
    member.Set("name", btf__name_by_offset(types, members[i].name_off));
    member.Set("offset", Napi::Number::New(
                             env, btf_member_bit_offset(type, i) / 8));
    member.Set("size", Napi::Number::New(env, static_cast<double>(size)));
    layout_members.Set(i, member);
  }

  Napi::Object layout = Napi::Object::New(env);
  layout.Set("size", Napi::Number::New(env, type->size));
  layout.Set("members", layout_members);
  return layout;
}

void BpfObject::Close(const Napi::CallbackInfo& info) {
  if (handle_->loading) {
    ThrowError(info.Env(),
               "BPF object " + handle_->FileName() +
                   " cannot be closed while load() is running",
               "ERR_ZH_BUSY");
  }
  handle_->Close();
}

}  // namespace zerohold
