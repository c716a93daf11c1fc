// SPDX-License-Identifier: Apache-2.0
#include "tc_attachment.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>

#include "addon_data.h"
#include "args.h"
#include "bpf_program.h"
#include "netns.h"
#include "promise_worker.h"

namespace zerohold {

namespace {

// BPF_TCX_INGRESS and BPF_TCX_EGRESS, added in Linux 6.6. The uapi headers
// this builds against predate them.
constexpr int kBpfTcxIngress = 46;
constexpr int kBpfTcxEgress = 47;

// Whether a detach failed because the device, its qdisc or the filter is
// gone already, as when the device was deleted: then nothing is left to
// detach.
bool IsGone(int err) {
  return err == -ENODEV || err == -ENOENT || err == -EINVAL || err == -ENXIO;
}

enum class TcKind { kAuto, kTcx, kClsact };

TcKind ParseTcKind(Napi::Env env, const std::string& kind) {
  if (kind == "auto") return TcKind::kAuto;
  if (kind == "tcx") return TcKind::kTcx;
  if (kind == "clsact") return TcKind::kClsact;
  ThrowTypeError(env, "kind must be 'auto', 'tcx' or 'clsact'",
                 "ERR_INVALID_ARG_VALUE");
}

bool ParseIngress(Napi::Env env, const std::string& direction) {
  if (direction == "ingress") return true;
  if (direction == "egress") return false;
  ThrowTypeError(env, "direction must be 'ingress' or 'egress'",
                 "ERR_INVALID_ARG_VALUE");
}

std::string Subject(const TcState& state, const char* what) {
  return "ifindex " + std::to_string(state.ifindex) + " " +
         (state.ingress ? "ingress" : "egress") + ", " + what;
}

bpf_tc_hook MakeHook(const TcState& state) {
  bpf_tc_hook hook = {};
  hook.sz = sizeof(hook);
  hook.ifindex = static_cast<int>(state.ifindex);
  hook.attach_point = state.ingress ? BPF_TC_INGRESS : BPF_TC_EGRESS;
  return hook;
}

// Deletes the clsact qdisc, and with it every filter on both directions.
int DestroyClsact(const TcState& state) {
  bpf_tc_hook hook = MakeHook(state);
  hook.attach_point = static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS |
                                                       BPF_TC_EGRESS);
  return bpf_tc_hook_destroy(&hook);
}

class TcAttachWorker : public PromiseWorker {
 public:
  TcAttachWorker(Napi::Env env, UniqueFd prog_fd, std::string prog_name,
                 TcKind kind, std::unique_ptr<TcState> state)
      : PromiseWorker(env, "zerohold.attachTc"),
        prog_fd_(std::move(prog_fd)),
        prog_name_(std::move(prog_name)),
        kind_(kind),
        state_(std::move(state)) {}

 protected:
  void Execute() override {
    NetnsScope scope;
    if (!EnterNetns(&scope, state_->netns)) return;

    if (kind_ != TcKind::kClsact) {
      int fd = bpf_link_create(
          prog_fd_.Get(), static_cast<int>(state_->ifindex),
          static_cast<bpf_attach_type>(state_->ingress ? kBpfTcxIngress
                                                       : kBpfTcxEgress),
          nullptr);
      if (fd >= 0) {
        state_->tcx = true;
        state_->link.Reset(fd);
        return;
      }

      // A kernel without tcx (before 6.6) does not recognize the attach
      // type and returns EINVAL. Only then does auto fall back to clsact.
      if (kind_ == TcKind::kTcx || fd != -EINVAL) {
        Fail(MakeSysError("bpf_link_create",
                          Subject(*state_, (prog_name_ + " tcx").c_str()),
                          fd));
        return;
      }
    }

    AttachClsact();
  }

  Napi::Value Result() override {
    return TcAttachment::Wrap(Env(), std::move(state_));
  }

 private:
  void AttachClsact() {
    bpf_tc_hook hook = MakeHook(*state_);
    int err = bpf_tc_hook_create(&hook);
    if (err < 0 && err != -EEXIST) {
      Fail(MakeSysError("bpf_tc_hook_create", Subject(*state_, "clsact"),
                        err));
      return;
    }
    state_->created_hook = err == 0;

    // Without a handle the kernel picks a free handle and priority, so
    // filters of other programs stay in place. With one, BPF_TC_F_REPLACE
    // swaps the program of the filter there in one netlink request, so a
    // restarted agent neither duplicates its filter nor leaves a gap.
    bpf_tc_opts opts = {};
    opts.sz = sizeof(opts);
    opts.prog_fd = prog_fd_.Get();
    if (state_->handle != 0) {
      opts.handle = state_->handle;
      opts.priority = state_->priority;
      opts.flags = BPF_TC_F_REPLACE;
    }
    err = bpf_tc_attach(&hook, &opts);
    if (err < 0) {
      if (state_->created_hook) DestroyClsact(*state_);
      Fail(MakeSysError("bpf_tc_attach",
                        Subject(*state_, (prog_name_ + " clsact").c_str()),
                        err));
      return;
    }

    state_->handle = opts.handle;
    state_->priority = opts.priority;
    state_->filter_attached = true;
  }

  UniqueFd prog_fd_;
  std::string prog_name_;
  TcKind kind_;
  std::unique_ptr<TcState> state_;
};

// Reads the optional { handle, priority } of a clsact filter. The kernel
// keeps the priority in 16 bits, and handle 0 would ask it to pick one.
void ParseFilterOptions(const Napi::CallbackInfo& info, size_t index,
                        TcState* state) {
  Napi::Env env = info.Env();
  if (info[index].IsUndefined() || info[index].IsNull()) return;

  Napi::Object options = ObjectArg(info, index, "options");
  state->handle = Uint32Value(env, options.Get("handle"), "options.handle");
  state->priority =
      Uint32Value(env, options.Get("priority"), "options.priority");
  if (state->handle == 0) {
    ThrowTypeError(env, "options.handle must not be 0",
                   "ERR_INVALID_ARG_VALUE");
  }
  if (state->priority == 0 || state->priority > 0xffff) {
    ThrowTypeError(env, "options.priority must be in [1, 65535]",
                   "ERR_INVALID_ARG_VALUE");
  }
}

Napi::Value AttachTc(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseOrRejection(env, [&] {
    BpfProgram* program = BpfProgram::FromValue(env, info[0], "prog");
    auto state = std::make_unique<TcState>();
    state->ifindex = Uint32Arg(info, 1, "ifindex");
    state->ingress = ParseIngress(env, StringArg(info, 2, "direction"));
    TcKind kind = ParseTcKind(env, StringArg(info, 3, "kind"));
    state->netns = OptionalStringArg(info, 4, "netns");
    ParseFilterOptions(info, 5, state.get());

    return PromiseWorker::Start(
        new TcAttachWorker(env, program->DupFd(env), program->ProgramName(),
                           kind, std::move(state)));
  });
}

}  // namespace

// Detaches on a worker thread. It keeps the TcAttachment alive through a
// reference and has sole use of its state until Finish().
class TcDetachWorker : public PromiseWorker {
 public:
  TcDetachWorker(Napi::Env env, TcAttachment* attachment)
      : PromiseWorker(env, "zerohold.TcAttachment.detach"),
        attachment_(attachment),
        state_(attachment->state_.get()),
        reference_(Napi::Persistent(attachment->Value())) {
    attachment_->detaching_ = true;
  }

 protected:
  void Execute() override {
    if (state_->tcx) {
      int err = bpf_link_detach(state_->link.Get());
      if (err < 0) {
        Fail(MakeSysError("bpf_link_detach", Subject(*state_, "tcx"), err));
      }
      return;
    }

    NetnsScope scope;
    if (!EnterNetns(&scope, state_->netns)) return;

    // filter_attached records progress, so a retry after a failed qdisc
    // removal does not fail on the filter that is already gone.
    if (state_->filter_attached) {
      bpf_tc_hook hook = MakeHook(*state_);
      bpf_tc_opts opts = {};
      opts.sz = sizeof(opts);
      opts.handle = state_->handle;
      opts.priority = state_->priority;
      int err = bpf_tc_detach(&hook, &opts);
      if (err < 0 && !IsGone(err)) {
        Fail(MakeSysError("bpf_tc_detach", Subject(*state_, "clsact"), err));
        return;
      }
      state_->filter_attached = false;
    }

    // NOTE: removing the qdisc also removes filters added to it after this
    // one, by this process or others. Detach them before this one.
    if (state_->created_hook) {
      int err = DestroyClsact(*state_);
      if (err < 0 && !IsGone(err)) {
        Fail(MakeSysError("bpf_tc_hook_destroy", Subject(*state_, "clsact"),
                          err));
        return;
      }
      state_->created_hook = false;
    }
  }

  void Finish() override { attachment_->detaching_ = false; }

  Napi::Value Result() override {
    attachment_->state_.reset();
    return Env().Undefined();
  }

 private:
  TcAttachment* attachment_;
  TcState* state_;
  Napi::ObjectReference reference_;
};

void TcAttachment::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function constructor =
      DefineClass(env, "TcAttachment",
                  {
                      InstanceAccessor<&TcAttachment::Kind>("kind"),
                      InstanceMethod<&TcAttachment::Pin>("pin"),
                      InstanceMethod<&TcAttachment::Detach>("detach"),
                  });
  GetAddonData(env).tc_attachment = Napi::Persistent(constructor);

  exports.Set("attachTc", Napi::Function::New<AttachTc>(env, "attachTc"));
}

Napi::Object TcAttachment::Wrap(Napi::Env env,
                                std::unique_ptr<TcState> state) {
  return GetAddonData(env).tc_attachment.New(
      {Napi::External<TcState>::New(env, state.release())});
}

TcAttachment::TcAttachment(const Napi::CallbackInfo& info)
    : ObjectWrap(info) {
  if (!info[0].IsExternal()) {
    ThrowTypeError(info.Env(),
                   "TcAttachment cannot be constructed directly: use "
                   "attachTc()",
                   "ERR_ILLEGAL_CONSTRUCTOR");
  }

  state_.reset(info[0].As<Napi::External<TcState>>().Data());
  tcx_ = state_->tcx;
}

Napi::Value TcAttachment::Kind(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), tcx_ ? "tcx" : "clsact");
}

void TcAttachment::Pin(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = StringArg(info, 0, "path");

  if (!tcx_) {
    ThrowError(env,
               "a clsact filter has no bpf_link to pin: attach with kind "
               "'tcx' for a link",
               "ERR_ZH_NOT_A_LINK");
  }
  if (detaching_ || state_ == nullptr) {
    ThrowError(env, "tc attachment is detached", "ERR_ZH_CLOSED");
  }

  int err = bpf_obj_pin(state_->link.Get(), path.c_str());
  if (err < 0) ThrowSysError(env, "bpf_obj_pin", path, err);
}

Napi::Value TcAttachment::Detach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseOrRejection(env, [&]() -> Napi::Value {
    if (detaching_) {
      ThrowError(env, "detach() is already running for this tc attachment",
                 "ERR_ZH_BUSY");
    }

    if (state_ == nullptr) {
      Napi::Promise::Deferred done = Napi::Promise::Deferred::New(env);
      done.Resolve(env.Undefined());
      return done.Promise();
    }
    return PromiseWorker::Start(new TcDetachWorker(env, this));
  });
}

}  // namespace zerohold
