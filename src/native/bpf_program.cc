// SPDX-License-Identifier: Apache-2.0
#include "bpf_program.h"

#include <bpf/bpf.h>
#include <errno.h>
#include <fcntl.h>

#include "addon_data.h"
#include "args.h"
#include "live_frames.h"
#include "promise_worker.h"
#include "sys_error.h"
#include "test_run.h"

namespace zerohold {

namespace {

// Everything a new BpfProgram takes over, passed through an External so
// that JS cannot call the constructor with arguments of its own.
struct BpfProgramInit {
  std::shared_ptr<ObjectHandle> owner;
  int fd = -1;
  std::string name;
  uint32_t type = 0;
  uint32_t expected_attach_type = 0;
  uint32_t id = 0;
};

}  // namespace

void BpfProgram::Init(Napi::Env env) {
  Napi::Function constructor = DefineClass(
      env, "BpfProgram",
      {
          InstanceAccessor<&BpfProgram::Name>("name"),
          InstanceAccessor<&BpfProgram::Type>("type"),
          InstanceAccessor<&BpfProgram::ExpectedAttachType>(
              "expectedAttachType"),
          InstanceAccessor<&BpfProgram::GetFd>("fd"),
          InstanceAccessor<&BpfProgram::Id>("id"),
          InstanceMethod<&BpfProgram::TestRun>("testRun"),
          InstanceMethod<&BpfProgram::TestRunSync>("testRunSync"),
          InstanceMethod<&BpfProgram::RunLive>("runLive"),
          InstanceMethod<&BpfProgram::RunLiveNow>("runLiveNow"),
          InstanceMethod<&BpfProgram::Pin>("pin"),
      });
  GetAddonData(env).bpf_program = Napi::Persistent(constructor);
}

Napi::Object BpfProgram::FromObject(Napi::Env env,
                                    std::shared_ptr<ObjectHandle> owner,
                                    const bpf_program* program) {
  BpfProgramInit init;
  init.name = bpf_program__name(program);
  init.fd = bpf_program__fd(program);
  if (init.fd < 0) {
    ThrowError(env,
               "program " + init.name + " is not loaded: autoload is off or " +
                   owner->FileName() + " did not load",
               "ERR_ZH_NOT_LOADED");
  }
  init.type = bpf_program__type(program);
  init.expected_attach_type = bpf_program__expected_attach_type(program);

  bpf_prog_info info = {};
  uint32_t length = sizeof(info);
  int err = bpf_obj_get_info_by_fd(init.fd, &info, &length);
  if (err < 0) ThrowSysError(env, "bpf_obj_get_info_by_fd", init.name, err);
  init.id = info.id;

  init.owner = std::move(owner);
  return GetAddonData(env).bpf_program.New(
      {Napi::External<BpfProgramInit>::New(env, &init)});
}

BpfProgram* BpfProgram::FromValue(Napi::Env env, Napi::Value value,
                                  const char* name) {
  if (!value.IsObject() ||
      !value.As<Napi::Object>().InstanceOf(
          GetAddonData(env).bpf_program.Value())) {
    ThrowTypeError(env, std::string(name) + " must be a BpfProgram",
                   "ERR_INVALID_ARG_TYPE");
  }
  return Unwrap(value.As<Napi::Object>());
}

BpfProgram::BpfProgram(const Napi::CallbackInfo& info) : ObjectWrap(info) {
  if (!info[0].IsExternal()) {
    ThrowTypeError(info.Env(),
                   "BpfProgram cannot be constructed directly: use "
                   "BpfObject.program()",
                   "ERR_ILLEGAL_CONSTRUCTOR");
  }

  BpfProgramInit* init = info[0].As<Napi::External<BpfProgramInit>>().Data();
  owner_ = std::move(init->owner);
  fd_ = init->fd;
  name_ = std::move(init->name);
  type_ = init->type;
  expected_attach_type_ = init->expected_attach_type;
  id_ = init->id;
}

int BpfProgram::Fd(Napi::Env env) const {
  if (owner_->Get() == nullptr) {
    ThrowError(env,
               "program " + name_ + " is closed because BPF object " +
                   owner_->FileName() + " was closed",
               "ERR_ZH_CLOSED");
  }
  return fd_;
}

UniqueFd BpfProgram::DupFd(Napi::Env env) const {
  UniqueFd fd(fcntl(Fd(env), F_DUPFD_CLOEXEC, 0));
  if (!fd.Valid()) ThrowSysError(env, "fcntl", name_, errno);
  return fd;
}

Napi::Value BpfProgram::Name(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), name_);
}

Napi::Value BpfProgram::Type(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), type_);
}

Napi::Value BpfProgram::ExpectedAttachType(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), expected_attach_type_);
}

Napi::Value BpfProgram::GetFd(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), Fd(info.Env()));
}

Napi::Value BpfProgram::Id(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), id_);
}

Napi::Value BpfProgram::TestRun(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseOrRejection(env, [&] {
    TestRunInput input = ParseTestRunOptions(env, info[0]);
    return StartTestRun(env, DupFd(env), name_, std::move(input));
  });
}

Napi::Value BpfProgram::TestRunSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TestRunInput input = ParseTestRunOptions(env, info[0]);
  int fd = Fd(env);

  TestRunOutput output;
  int err = RunTest(fd, input, &output);
  if (err < 0) ThrowSysError(env, "bpf_prog_test_run_opts", name_, err);
  return TestRunResult(env, output);
}

Napi::Value BpfProgram::RunLive(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseOrRejection(env, [&] {
    std::string netns = OptionalStringArg(info, 1, "netns");
    return StartLiveFrames(env, DupFd(env), name_, info[0], std::move(netns));
  });
}

Napi::Value BpfProgram::RunLiveNow(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string netns = OptionalStringArg(info, 1, "netns");
  return RunLiveFramesNow(env, Fd(env), name_, info[0], netns);
}

void BpfProgram::Pin(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = StringArg(info, 0, "path");
  int fd = Fd(env);

  int err = bpf_obj_pin(fd, path.c_str());
  if (err < 0) ThrowSysError(env, "bpf_obj_pin", path, err);
}

}  // namespace zerohold
