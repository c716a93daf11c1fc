// SPDX-License-Identifier: Apache-2.0
#ifndef ZEROHOLD_NATIVE_BPF_PROGRAM_H
#define ZEROHOLD_NATIVE_BPF_PROGRAM_H

#include <bpf/libbpf.h>
#include <napi.h>

#include <cstdint>
#include <memory>
#include <string>

#include "object_handle.h"
#include "unique_fd.h"

namespace zerohold {

// A program of a loaded BpfObject: test runs, live-frames re-injection and
// pinning. Attaching is done by the free functions attachXdp and attachTc.
class BpfProgram : public Napi::ObjectWrap<BpfProgram> {
 public:
  static void Init(Napi::Env env);

  // Wraps a loaded program; the handle keeps the object open.
  static Napi::Object FromObject(Napi::Env env,
                                 std::shared_ptr<ObjectHandle> owner,
                                 const bpf_program* program);

  // Returns the BpfProgram inside value; throws a TypeError naming the
  // argument if value is something else.
  static BpfProgram* FromValue(Napi::Env env, Napi::Value value,
                               const char* name);

  explicit BpfProgram(const Napi::CallbackInfo& info);

  // Throws if the object is closed.
  int Fd(Napi::Env env) const;

  // Returns a duplicate of the descriptor for a worker thread, so that
  // closing the object while the worker runs cannot unload the program.
  UniqueFd DupFd(Napi::Env env) const;

  const std::string& ProgramName() const { return name_; }

 private:
  Napi::Value Name(const Napi::CallbackInfo& info);
  Napi::Value Type(const Napi::CallbackInfo& info);
  Napi::Value ExpectedAttachType(const Napi::CallbackInfo& info);
  Napi::Value GetFd(const Napi::CallbackInfo& info);
  Napi::Value Id(const Napi::CallbackInfo& info);

  Napi::Value TestRun(const Napi::CallbackInfo& info);
  Napi::Value TestRunSync(const Napi::CallbackInfo& info);
  Napi::Value RunLive(const Napi::CallbackInfo& info);
  Napi::Value RunLiveNow(const Napi::CallbackInfo& info);
  void Pin(const Napi::CallbackInfo& info);

  std::shared_ptr<ObjectHandle> owner_;
  int fd_ = -1;  // libbpf's descriptor, valid while owner_ is open
  std::string name_;
  uint32_t type_ = 0;
  uint32_t expected_attach_type_ = 0;
  uint32_t id_ = 0;
};

}  // namespace zerohold

#endif  // ZEROHOLD_NATIVE_BPF_PROGRAM_H
