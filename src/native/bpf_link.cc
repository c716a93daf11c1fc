// SPDX-License-Identifier: Apache-2.0
#include "bpf_link.h"

#include <bpf/bpf.h>
#include <errno.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>

#include "addon_data.h"
#include "args.h"
#include "bpf_program.h"
#include "pinned_object.h"
#include "sys_error.h"

namespace zerohold {

namespace {

// Everything a new BpfLink takes over, passed through an External so that
// JS cannot call the constructor with arguments of its own.
struct BpfLinkInit {
  UniqueFd fd;
  uint32_t id = 0;
  std::string kind;
  std::string mode;
};

// Link types and the tcx member of bpf_link_info's union, added in Linux
// 6.6. The uapi headers this builds against predate them.
constexpr uint32_t kBpfLinkTypeTcx = 11;

struct TcxLinkInfo {
  uint32_t ifindex;
  uint32_t attach_type;
};

static_assert(sizeof(bpf_link_info) - offsetof(bpf_link_info, xdp) >=
                  sizeof(TcxLinkInfo),
              "the union of bpf_link_info is too small for the tcx member");

}  // namespace

void BpfLink::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function constructor =
      DefineClass(env, "BpfLink",
                  {
                      InstanceAccessor<&BpfLink::Id>("id"),
                      InstanceAccessor<&BpfLink::Kind>("kind"),
                      InstanceAccessor<&BpfLink::Mode>("mode"),
                      InstanceMethod<&BpfLink::Info>("info"),
                      InstanceMethod<&BpfLink::Pin>("pin"),
                      InstanceMethod<&BpfLink::Unpin>("unpin"),
                      InstanceMethod<&BpfLink::Update>("update"),
                      InstanceMethod<&BpfLink::Detach>("detach"),
                      InstanceMethod<&BpfLink::Close>("close"),
                  });
  GetAddonData(env).bpf_link = Napi::Persistent(constructor);

  exports.Set("openPinnedLink", Napi::Function::New<OpenPinnedLink>(
                                    env, "openPinnedLink"));
}

Napi::Object BpfLink::Wrap(Napi::Env env, UniqueFd fd,
                           const std::string& kind, const std::string& mode) {
  bpf_link_info info = {};
  uint32_t length = sizeof(info);
  int err = bpf_obj_get_info_by_fd(fd.Get(), &info, &length);
  if (err < 0) ThrowSysError(env, "bpf_obj_get_info_by_fd", "link", err);

  BpfLinkInit init;
  init.fd = std::move(fd);
  init.id = info.id;
  init.kind = kind;
  init.mode = mode;
  return GetAddonData(env).bpf_link.New(
      {Napi::External<BpfLinkInit>::New(env, &init)});
}

Napi::Value BpfLink::OpenPinnedLink(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = StringArg(info, 0, "path");
  return Wrap(env, OpenPinned(env, path, kBpfLinkKind), "pinned", "");
}

BpfLink::BpfLink(const Napi::CallbackInfo& info) : ObjectWrap(info) {
  if (!info[0].IsExternal()) {
    ThrowTypeError(info.Env(),
                   "BpfLink cannot be constructed directly: use attachXdp() "
                   "or openPinnedLink()",
                   "ERR_ILLEGAL_CONSTRUCTOR");
  }

  BpfLinkInit* init = info[0].As<Napi::External<BpfLinkInit>>().Data();
  fd_ = std::move(init->fd);
  id_ = init->id;
  kind_ = std::move(init->kind);
  mode_ = std::move(init->mode);
}

int BpfLink::Fd(Napi::Env env) const {
  if (!fd_.Valid()) {
    ThrowError(env, Subject() + " is closed", "ERR_ZH_CLOSED");
  }
  return fd_.Get();
}

Napi::Value BpfLink::Id(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), id_);
}

Napi::Value BpfLink::Kind(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), kind_);
}

Napi::Value BpfLink::Mode(const Napi::CallbackInfo& info) {
  if (mode_.empty()) return info.Env().Undefined();
  return Napi::String::New(info.Env(), mode_);
}

Napi::Value BpfLink::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Fd(env);

  bpf_link_info link_info = {};
  uint32_t length = sizeof(link_info);
  int err = bpf_obj_get_info_by_fd(fd, &link_info, &length);
  if (err < 0) ThrowSysError(env, "bpf_obj_get_info_by_fd", Subject(), err);

  Napi::Object result = Napi::Object::New(env);
  result.Set("type", Napi::Number::New(env, link_info.type));
  result.Set("id", Napi::Number::New(env, link_info.id));
  result.Set("progId", Napi::Number::New(env, link_info.prog_id));

  // The kernel reports ifindex 0 once the device of the link is gone.
  // XDP links report no attach mode. queryXdp() reports it per device.
  if (link_info.type == BPF_LINK_TYPE_XDP) {
    result.Set("ifindex", Napi::Number::New(env, link_info.xdp.ifindex));
    result.Set("attachType", Napi::Number::New(env, BPF_XDP));
  } else if (link_info.type == kBpfLinkTypeTcx) {
    TcxLinkInfo tcx;
    std::memcpy(&tcx, &link_info.xdp, sizeof(tcx));
    result.Set("ifindex", Napi::Number::New(env, tcx.ifindex));
    result.Set("attachType", Napi::Number::New(env, tcx.attach_type));
  }
  return result;
}

void BpfLink::Pin(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = StringArg(info, 0, "path");
  int fd = Fd(env);

  int err = bpf_obj_pin(fd, path.c_str());
  if (err < 0) ThrowSysError(env, "bpf_obj_pin", path, err);
}

void BpfLink::Unpin(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = StringArg(info, 0, "path");

  if (unlink(path.c_str()) != 0) ThrowSysError(env, "unlink", path, errno);
}

void BpfLink::Update(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  BpfProgram* program = BpfProgram::FromValue(env, info[0], "prog");
  int prog_fd = program->Fd(env);
  int fd = Fd(env);

  int err = bpf_link_update(fd, prog_fd, nullptr);
  if (err < 0) ThrowSysError(env, "bpf_link_update", Subject(), err);
}

void BpfLink::Detach(const Napi::CallbackInfo& info) {
  if (!fd_.Valid()) return;

  // Detaching first ends the attachment even if the link is pinned or
  // another process has a descriptor of it.
  int err = bpf_link_detach(fd_.Get());
  if (err < 0) ThrowSysError(info.Env(), "bpf_link_detach", Subject(), err);
  fd_.Reset();
}

void BpfLink::Close(const Napi::CallbackInfo&) { fd_.Reset(); }

}  // namespace zerohold
