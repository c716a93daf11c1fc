// SPDX-License-Identifier: Apache-2.0
#include "if_index.h"

#include <errno.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "args.h"
#include "netns.h"
#include "promise_worker.h"

namespace zerohold {

namespace {

// Reads one property of a named device on a worker thread, inside the
// network namespace.
class DeviceWorker : public PromiseWorker {
 public:
  enum class Property { kIndex, kLinkType };

  DeviceWorker(Napi::Env env, const char* resource, Property property,
               std::string name, std::string netns)
      : PromiseWorker(env, resource),
        property_(property),
        name_(std::move(name)),
        netns_(std::move(netns)) {}

 protected:
  void Execute() override {
    NetnsScope scope;
    if (!EnterNetns(&scope, netns_)) return;

    if (property_ == Property::kIndex) {
      value_ = if_nametoindex(name_.c_str());
      if (value_ == 0) Fail(MakeSysError("if_nametoindex", name_, errno));
      return;
    }
    ReadLinkType();
  }

  Napi::Value Result() override { return Napi::Number::New(Env(), value_); }

 private:
  // SIOCGIFHWADDR returns the ARPHRD_* type in sa_family and needs no
  // capability. The socket is opened inside the namespace.
  void ReadLinkType() {
    if (name_.size() >= IFNAMSIZ) {
      Fail(MakeSysError("SIOCGIFHWADDR", name_, ENODEV));
      return;
    }
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      Fail(MakeSysError("socket", name_, errno));
      return;
    }

    struct ifreq request;
    std::memset(&request, 0, sizeof(request));
    std::memcpy(request.ifr_name, name_.c_str(), name_.size());
    int err = ioctl(fd, SIOCGIFHWADDR, &request) == 0 ? 0 : errno;
    close(fd);
    if (err != 0) {
      Fail(MakeSysError("SIOCGIFHWADDR", name_, err));
      return;
    }
    value_ = request.ifr_hwaddr.sa_family;
  }

  Property property_;
  std::string name_;
  std::string netns_;
  unsigned int value_ = 0;
};

Napi::Value StartDeviceWorker(const Napi::CallbackInfo& info,
                              const char* resource,
                              DeviceWorker::Property property) {
  Napi::Env env = info.Env();
  return PromiseOrRejection(env, [&] {
    std::string name = StringArg(info, 0, "name");
    std::string netns = OptionalStringArg(info, 1, "netns");
    return PromiseWorker::Start(new DeviceWorker(
        env, resource, property, std::move(name), std::move(netns)));
  });
}

Napi::Value IfNameToIndex(const Napi::CallbackInfo& info) {
  return StartDeviceWorker(info, "zerohold.ifNameToIndex",
                           DeviceWorker::Property::kIndex);
}

Napi::Value InterfaceLinkType(const Napi::CallbackInfo& info) {
  return StartDeviceWorker(info, "zerohold.interfaceLinkType",
                           DeviceWorker::Property::kLinkType);
}

}  // namespace

void InitIfIndex(Napi::Env env, Napi::Object exports) {
  exports.Set("ifNameToIndex",
              Napi::Function::New<IfNameToIndex>(env, "ifNameToIndex"));
  exports.Set("interfaceLinkType",
              Napi::Function::New<InterfaceLinkType>(env, "interfaceLinkType"));
}

}  // namespace zerohold
