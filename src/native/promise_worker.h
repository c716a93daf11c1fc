// SPDX-License-Identifier: Apache-2.0
#ifndef ZEROHOLD_NATIVE_PROMISE_WORKER_H
#define ZEROHOLD_NATIVE_PROMISE_WORKER_H

#include <napi.h>

#include <string>

#include "netns.h"
#include "sys_error.h"

namespace zerohold {

// An AsyncWorker that settles a Promise. Execute() runs on a libuv pool
// thread and reports failure with Fail(); the Promise then rejects with an
// Error that carries code, errno and syscall. Otherwise it resolves with
// Result(), which runs on the JS thread.
class PromiseWorker : public Napi::AsyncWorker {
 public:
  // Queues a worker made with new and returns its Promise. The worker
  // deletes itself once the Promise settles.
  static Napi::Promise Start(PromiseWorker* worker);

 protected:
  PromiseWorker(Napi::Env env, const char* resource_name);

  // Worker thread only.
  void Fail(SysError error);

  // Worker thread only: moves the thread into netns for the lifetime of
  // scope. On failure, records the error with Fail() and returns false.
  bool EnterNetns(NetnsScope* scope, const std::string& netns);

  // Runs on the JS thread once Execute() is done, before the Promise
  // settles either way.
  virtual void Finish() {}

  virtual Napi::Value Result();

  // Returns the Error to reject with; subclasses may add properties.
  virtual Napi::Error MakeError(const SysError& error);

 private:
  void OnOK() final;
  void OnError(const Napi::Error& error) final;

  Napi::Promise::Deferred deferred_;
  SysError error_;
};

// Returns the Promise that start() returns. An Error that start() throws,
// such as a failed argument check, becomes a rejected Promise instead, so a
// function that returns a Promise never throws.
template <typename StartFunction>
Napi::Value PromiseOrRejection(Napi::Env env, StartFunction start) {
  try {
    return start();
  } catch (const Napi::Error& error) {
    Napi::Promise::Deferred rejected = Napi::Promise::Deferred::New(env);
    rejected.Reject(error.Value());
    return rejected.Promise();
  }
}

}  // namespace zerohold

#endif  // ZEROHOLD_NATIVE_PROMISE_WORKER_H
