// SPDX-License-Identifier: Apache-2.0
#include "promise_worker.h"

namespace zerohold {

PromiseWorker::PromiseWorker(Napi::Env env, const char* resource_name)
    : Napi::AsyncWorker(env, resource_name),
      deferred_(Napi::Promise::Deferred::New(env)) {}

Napi::Promise PromiseWorker::Start(PromiseWorker* worker) {
  Napi::Promise promise = worker->deferred_.Promise();
  worker->Queue();
  return promise;
}

void PromiseWorker::Fail(SysError error) {
  error_ = std::move(error);
  SetError(error_.Message());
}

bool PromiseWorker::EnterNetns(NetnsScope* scope, const std::string& netns) {
  SysError error;
  if (scope->Enter(netns, &error)) return true;
  Fail(std::move(error));
  return false;
}

Napi::Value PromiseWorker::Result() { return Env().Undefined(); }

Napi::Error PromiseWorker::MakeError(const SysError& error) {
  return ToJsError(Env(), error);
}

void PromiseWorker::OnOK() {
  Finish();

  // Result() wraps native handles and may throw; the caller must see that
  // as a rejection, not as an uncaught exception.
  try {
    deferred_.Resolve(Result());
  } catch (const Napi::Error& error) {
    deferred_.Reject(error.Value());
  }
}

void PromiseWorker::OnError(const Napi::Error& error) {
  Finish();

  // error_ is empty when Execute() threw a C++ exception instead of
  // calling Fail(); the AsyncWorker message then names it.
  if (error_.err == 0) {
    deferred_.Reject(error.Value());
    return;
  }
  deferred_.Reject(MakeError(error_).Value());
}

}  // namespace zerohold
