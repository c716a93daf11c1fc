// SPDX-License-Identifier: Apache-2.0
#ifndef ZEROHOLD_NATIVE_BPF_LINK_H
#define ZEROHOLD_NATIVE_BPF_LINK_H

#include <napi.h>

#include <cstdint>
#include <string>

#include "unique_fd.h"

namespace zerohold {

// A bpf_link file descriptor. The kernel keeps the attachment while any
// descriptor or pin of the link exists, so when this handle is garbage
// collected without detach() or a pin, the program is detached.
class BpfLink : public Napi::ObjectWrap<BpfLink> {
 public:
  static void Init(Napi::Env env, Napi::Object exports);

  // Wraps a new link. kind is "xdp", "tcx" or "pinned"; mode is the XDP
  // attach mode ("native" or "generic") or "" when it does not apply.
  static Napi::Object Wrap(Napi::Env env, UniqueFd fd, const std::string& kind,
                           const std::string& mode);

  explicit BpfLink(const Napi::CallbackInfo& info);

 private:
  static Napi::Value OpenPinnedLink(const Napi::CallbackInfo& info);

  Napi::Value Id(const Napi::CallbackInfo& info);
  Napi::Value Kind(const Napi::CallbackInfo& info);
  Napi::Value Mode(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);
  void Pin(const Napi::CallbackInfo& info);
  void Unpin(const Napi::CallbackInfo& info);
  void Update(const Napi::CallbackInfo& info);
  void Detach(const Napi::CallbackInfo& info);
  void Close(const Napi::CallbackInfo& info);

  // Throws once the link is detached or closed.
  int Fd(Napi::Env env) const;

  std::string Subject() const { return "link " + std::to_string(id_); }

  UniqueFd fd_;
  uint32_t id_ = 0;
  std::string kind_;
  std::string mode_;
};

}  // namespace zerohold

#endif  // ZEROHOLD_NATIVE_BPF_LINK_H
