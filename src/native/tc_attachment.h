// SPDX-License-Identifier: Apache-2.0
#ifndef ZEROHOLD_NATIVE_TC_ATTACHMENT_H
#define ZEROHOLD_NATIVE_TC_ATTACHMENT_H

#include <napi.h>

#include <cstdint>
#include <memory>
#include <string>

#include "unique_fd.h"

namespace zerohold {

// Location of an attached tc program, and what detaching must remove.
struct TcState {
  bool tcx = false;

  UniqueFd link;  // tcx: the bpf_link

  // clsact: the filter and its device, looked up in netns. A handle and
  // priority given to attachTc() replace the filter there, if any.
  uint32_t ifindex = 0;
  bool ingress = true;
  uint32_t handle = 0;
  uint32_t priority = 0;
  std::string netns;
  bool filter_attached = false;
  bool created_hook = false;  // this attachment added the clsact qdisc
};

// A tc program attached with tcx (a bpf_link) or as a direct-action
// filter of a clsact qdisc. A tcx link is detached when this handle is
// garbage collected; a clsact filter stays until detach().
class TcAttachment : public Napi::ObjectWrap<TcAttachment> {
 public:
  // Registers the class and attachTc().
  static void Init(Napi::Env env, Napi::Object exports);

  static Napi::Object Wrap(Napi::Env env, std::unique_ptr<TcState> state);

  explicit TcAttachment(const Napi::CallbackInfo& info);

 private:
  friend class TcDetachWorker;

  Napi::Value Kind(const Napi::CallbackInfo& info);
  void Pin(const Napi::CallbackInfo& info);
  Napi::Value Detach(const Napi::CallbackInfo& info);

  std::unique_ptr<TcState> state_;  // null once detached
  bool tcx_ = false;
  bool detaching_ = false;  // a worker uses state_; nothing else may
};

}  // namespace zerohold

#endif  // ZEROHOLD_NATIVE_TC_ATTACHMENT_H
