// SPDX-License-Identifier: Apache-2.0
#include "xdp.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>

#include <string>

#include "args.h"
#include "bpf_link.h"
#include "bpf_program.h"
#include "netns.h"
#include "promise_worker.h"
#include "unique_fd.h"

namespace zerohold {

namespace {

enum class XdpMode { kNative, kGeneric, kAuto };

XdpMode ParseXdpMode(Napi::Env env, const std::string& mode) {
  if (mode == "native") return XdpMode::kNative;
  if (mode == "generic") return XdpMode::kGeneric;
  if (mode == "auto") return XdpMode::kAuto;
  ThrowTypeError(env, "mode must be 'native', 'generic' or 'auto'",
                 "ERR_INVALID_ARG_VALUE");
}

class XdpAttachWorker : public PromiseWorker {
 public:
  XdpAttachWorker(Napi::Env env, UniqueFd prog_fd, std::string prog_name,
                  uint32_t ifindex, XdpMode mode, std::string netns)
      : PromiseWorker(env, "zerohold.attachXdp"),
        prog_fd_(std::move(prog_fd)),
        prog_name_(std::move(prog_name)),
        ifindex_(ifindex),
        mode_(mode),
        netns_(std::move(netns)) {}

 protected:
  void Execute() override {
    NetnsScope scope;
    if (!EnterNetns(&scope, netns_)) return;

    if (mode_ != XdpMode::kGeneric) {
      int fd = CreateLink(XDP_FLAGS_DRV_MODE);
      if (fd >= 0) {
        link_.Reset(fd);
        attached_mode_ = "native";
        return;
      }

      // A device without native XDP support, such as a bridge, rejects
      // native mode with EOPNOTSUPP (seen on Linux 6.18). Only then does
      // auto fall back to generic mode.
      if (mode_ == XdpMode::kNative || fd != -EOPNOTSUPP) {
        Fail(LinkError("native", fd));
        return;
      }
    }

    int fd = CreateLink(XDP_FLAGS_SKB_MODE);
    if (fd < 0) {
      Fail(LinkError("generic", fd));
      return;
    }
    link_.Reset(fd);
    attached_mode_ = "generic";
  }

  // The error of a failed link_create, with the fix for the conflicts
  // that another program on the device causes.
  SysError LinkError(const char* mode, int err) {
    SysError error = MakeSysError("bpf_link_create", Subject(mode), err);
    if (error.err == EBUSY) {
      error.detail =
          "another XDP program or link is attached to the device in this "
          "mode; detach it, or attach zerohold with hook tc";
    } else if (error.err == EEXIST) {
      error.detail =
          "an XDP program is attached to the device in the other mode; "
          "detach it, or attach zerohold in that mode";
    }
    return error;
  }

  Napi::Value Result() override {
    return BpfLink::Wrap(Env(), std::move(link_), "xdp", attached_mode_);
  }

 private:
  int CreateLink(uint32_t flags) {
    bpf_link_create_opts opts = {};
    opts.sz = sizeof(opts);
    opts.flags = flags;
    return bpf_link_create(prog_fd_.Get(), static_cast<int>(ifindex_),
                           BPF_XDP, &opts);
  }

  std::string Subject(const char* mode) const {
    return prog_name_ + ", ifindex " + std::to_string(ifindex_) + ", " +
           mode + " XDP";
  }

  UniqueFd prog_fd_;
  std::string prog_name_;
  uint32_t ifindex_;
  XdpMode mode_;
  std::string netns_;
  UniqueFd link_;
  std::string attached_mode_;
};

class XdpQueryWorker : public PromiseWorker {
 public:
  XdpQueryWorker(Napi::Env env, uint32_t ifindex, std::string netns)
      : PromiseWorker(env, "zerohold.queryXdp"),
        ifindex_(ifindex),
        netns_(std::move(netns)) {}

 protected:
  void Execute() override {
    NetnsScope scope;
    if (!EnterNetns(&scope, netns_)) return;

    opts_.sz = sizeof(opts_);
    int err = bpf_xdp_query(static_cast<int>(ifindex_), 0, &opts_);
    if (err < 0) {
      Fail(MakeSysError("bpf_xdp_query",
                        "ifindex " + std::to_string(ifindex_), err));
    }
  }

  Napi::Value Result() override {
    Napi::Env env = Env();
    const char* mode = "none";
    uint32_t prog_id = opts_.prog_id;
    switch (opts_.attach_mode) {
      case XDP_ATTACHED_DRV:
        mode = "native";
        break;
      case XDP_ATTACHED_SKB:
        mode = "generic";
        break;
      case XDP_ATTACHED_HW:
        mode = "offload";
        break;
      case XDP_ATTACHED_MULTI:
        // The kernel reports no single id then. The native program is
        // returned because it runs before the generic one.
        mode = "multi";
        prog_id = opts_.drv_prog_id;
        break;
    }

    Napi::Object result = Napi::Object::New(env);
    result.Set("progId", Napi::Number::New(env, prog_id));
    result.Set("mode", mode);
    result.Set("nativeProgId", Napi::Number::New(env, opts_.drv_prog_id));
    result.Set("genericProgId", Napi::Number::New(env, opts_.skb_prog_id));
    return result;
  }

 private:
  uint32_t ifindex_;
  std::string netns_;
  bpf_xdp_query_opts opts_ = {};
};

Napi::Value AttachXdp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseOrRejection(env, [&] {
    BpfProgram* program = BpfProgram::FromValue(env, info[0], "prog");
    uint32_t ifindex = Uint32Arg(info, 1, "ifindex");
    XdpMode mode = ParseXdpMode(env, StringArg(info, 2, "mode"));
    std::string netns = OptionalStringArg(info, 3, "netns");

    return PromiseWorker::Start(
        new XdpAttachWorker(env, program->DupFd(env), program->ProgramName(),
                            ifindex, mode, std::move(netns)));
  });
}

Napi::Value QueryXdp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseOrRejection(env, [&] {
    uint32_t ifindex = Uint32Arg(info, 0, "ifindex");
    std::string netns = OptionalStringArg(info, 1, "netns");
    return PromiseWorker::Start(
        new XdpQueryWorker(env, ifindex, std::move(netns)));
  });
}

}  // namespace

void InitXdp(Napi::Env env, Napi::Object exports) {
  exports.Set("attachXdp", Napi::Function::New<AttachXdp>(env, "attachXdp"));
  exports.Set("queryXdp", Napi::Function::New<QueryXdp>(env, "queryXdp"));
}

}  // namespace zerohold
