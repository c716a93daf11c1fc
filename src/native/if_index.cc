// SPDX-License-Identifier: Apache-2.0
#include "if_index.h"

#include <errno.h>
#include <net/if.h>

#include <string>

#include "args.h"
#include "netns.h"
#include "promise_worker.h"

namespace zerohold {

namespace {

class IfIndexWorker : public PromiseWorker {
 public:
  IfIndexWorker(Napi::Env env, std::string name, std::string netns)
      : PromiseWorker(env, "zerohold.ifNameToIndex"),
        name_(std::move(name)),
        netns_(std::move(netns)) {}

 protected:
  void Execute() override {
    NetnsScope scope;
    if (!EnterNetns(&scope, netns_)) return;

    ifindex_ = if_nametoindex(name_.c_str());
    if (ifindex_ == 0) Fail(MakeSysError("if_nametoindex", name_, errno));
  }

  Napi::Value Result() override { return Napi::Number::New(Env(), ifindex_); }

 private:
  std::string name_;
  std::string netns_;
  unsigned int ifindex_ = 0;
};

Napi::Value IfNameToIndex(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseOrRejection(env, [&] {
    std::string name = StringArg(info, 0, "name");
    std::string netns = OptionalStringArg(info, 1, "netns");
    return PromiseWorker::Start(
        new IfIndexWorker(env, std::move(name), std::move(netns)));
  });
}

}  // namespace

void InitIfIndex(Napi::Env env, Napi::Object exports) {
  exports.Set("ifNameToIndex",
              Napi::Function::New<IfNameToIndex>(env, "ifNameToIndex"));
}

}  // namespace zerohold
