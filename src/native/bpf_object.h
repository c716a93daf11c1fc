// SPDX-License-Identifier: Apache-2.0
#ifndef ZEROHOLD_NATIVE_BPF_OBJECT_H
#define ZEROHOLD_NATIVE_BPF_OBJECT_H

#include <bpf/libbpf.h>
#include <napi.h>

#include <memory>
#include <string>

#include "object_handle.h"

namespace zerohold {

// A BPF ELF object file: opened by the constructor, configured with the
// set* methods, then loaded with load(). Maps and programs taken from it
// share its ObjectHandle and throw once close() has run.
class BpfObject : public Napi::ObjectWrap<BpfObject> {
 public:
  static void Init(Napi::Env env, Napi::Object exports);

  explicit BpfObject(const Napi::CallbackInfo& info);

 private:
  Napi::Value Path(const Napi::CallbackInfo& info);
  Napi::Value ProgramNames(const Napi::CallbackInfo& info);
  Napi::Value MapNames(const Napi::CallbackInfo& info);
  Napi::Value MapDefinition(const Napi::CallbackInfo& info);
  void SetProgramType(const Napi::CallbackInfo& info);
  void SetExpectedAttachType(const Napi::CallbackInfo& info);
  void SetAutoload(const Napi::CallbackInfo& info);
  void SetMaxEntries(const Napi::CallbackInfo& info);
  void SetPinPath(const Napi::CallbackInfo& info);
  Napi::Value Load(const Napi::CallbackInfo& info);
  Napi::Value Map(const Napi::CallbackInfo& info);
  Napi::Value Program(const Napi::CallbackInfo& info);
  Napi::Value StructLayout(const Napi::CallbackInfo& info);
  void Close(const Napi::CallbackInfo& info);

  // Each throws a TypeError naming the program or map if it is unknown.
  bpf_program* FindProgram(Napi::Env env, const std::string& name) const;
  bpf_map* FindMap(Napi::Env env, const std::string& name) const;

  // Throws unless load() has not run yet; method names the caller.
  void RequireNotLoaded(Napi::Env env, const char* method) const;
  void RequireLoaded(Napi::Env env, const char* method) const;

  std::shared_ptr<ObjectHandle> handle_;
};

}  // namespace zerohold

#endif  // ZEROHOLD_NATIVE_BPF_OBJECT_H
