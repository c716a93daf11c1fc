// SPDX-License-Identifier: Apache-2.0
#ifndef ZEROHOLD_NATIVE_INTERFACES_H
#define ZEROHOLD_NATIVE_INTERFACES_H

#include <napi.h>
#include <uv.h>

#include <memory>
#include <vector>

#include "unique_fd.h"

namespace zerohold {

// Watches the interfaces of a network namespace: an rtnetlink socket
// created in that namespace and subscribed to RTMGRP_LINK, read on the JS
// thread through a uv_poll_t. Each wakeup reads the queued notifications
// and calls onChange(events, overrun) once. events lists {type: 'new' |
// 'del', ifindex, name}. overrun is true when the socket's receive queue
// overflowed (ENOBUFS) and notifications were lost, so the caller must
// list the interfaces again. A 'new' event also reports a change of
// flags, state or name of an interface that already exists.
class InterfaceMonitor : public Napi::ObjectWrap<InterfaceMonitor> {
 public:
  static void Init(Napi::Env env, Napi::Object exports);

  explicit InterfaceMonitor(const Napi::CallbackInfo& info);
  ~InterfaceMonitor() override;

 private:
  static void OnReadable(uv_poll_t* handle, int status, int events);

  void Start(const Napi::CallbackInfo& info);
  void Close(const Napi::CallbackInfo& info);

  // Reads up to a bounded number of datagrams and calls onChange, with
  // overrun set when the poll reported an error or a read found the
  // queue overflowed.
  void Drain(Napi::Env env, bool overrun);

  void StopPolling();

  // Frees the poll handle and the socket; safe to call twice.
  void Release();

  UniqueFd socket_;
  uv_poll_t* poll_ = nullptr;  // freed by its close callback
  bool started_ = false;
  Napi::FunctionReference on_change_;
  std::unique_ptr<Napi::AsyncContext> async_context_;
  std::vector<char> buffer_;  // one datagram
};

// Registers listInterfaces(netns?), which resolves with the interfaces of
// a namespace from an RTM_GETLINK dump, and InterfaceMonitor.
void InitInterfaces(Napi::Env env, Napi::Object exports);

}  // namespace zerohold

#endif  // ZEROHOLD_NATIVE_INTERFACES_H
