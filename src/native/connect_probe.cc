// SPDX-License-Identifier: Apache-2.0
#include "connect_probe.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <cstring>
#include <string>

#include "args.h"
#include "netns.h"
#include "promise_worker.h"
#include "unique_fd.h"

namespace zerohold {

namespace {

// The maximum timeoutMs. A probe occupies a libuv pool thread while it
// waits, so a long one would delay re-injection and file system calls.
constexpr uint32_t kMaxTimeoutMs = 10000;

// One connection attempt on a pool thread, which stays in the namespace
// until the attempt ends.
class ConnectProbeWorker : public PromiseWorker {
 public:
  ConnectProbeWorker(Napi::Env env, sockaddr_storage address,
                     socklen_t address_len, std::string subject,
                     uint32_t timeout_ms, std::string netns)
      : PromiseWorker(env, "zerohold.connectProbe"),
        address_(address),
        address_len_(address_len),
        subject_(std::move(subject)),
        timeout_ms_(timeout_ms),
        netns_(std::move(netns)) {}

 protected:
  void Execute() override {
    NetnsScope scope;
    if (!EnterNetns(&scope, netns_)) return;

    UniqueFd fd(socket(address_.ss_family,
                       SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd.Valid()) {
      Fail(MakeSysError("socket", subject_, errno));
      return;
    }

    if (connect(fd.Get(), reinterpret_cast<const sockaddr*>(&address_),
                address_len_) == 0) {
      return;
    }
    if (errno != EINPROGRESS) {
      outcome_ = errno;
      return;
    }
    outcome_ = AwaitHandshake(fd.Get());
  }

  Napi::Value Result() override {
    if (outcome_ == 0) return Env().Null();
    return Napi::String::New(Env(), ErrnoName(outcome_));
  }

 private:
  // Returns 0 once the handshake completed, else the errno that ended it.
  int AwaitHandshake(int fd) {
    struct pollfd entry = {fd, POLLOUT, 0};
    int ready;
    do {
      ready = poll(&entry, 1, static_cast<int>(timeout_ms_));
    } while (ready < 0 && errno == EINTR);
    if (ready < 0) return errno;
    if (ready == 0) return ETIMEDOUT;

    int error = 0;
    socklen_t len = sizeof(error);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) != 0) return errno;
    return error;
  }

  sockaddr_storage address_;
  socklen_t address_len_;
  std::string subject_;
  uint32_t timeout_ms_;
  std::string netns_;
  int outcome_ = 0;
};

// Fills address from a numeric IPv4 or IPv6 address and a port, or throws
// a TypeError that names the value.
socklen_t ParseAddress(Napi::Env env, const std::string& text, uint32_t port,
                       sockaddr_storage* address) {
  std::memset(address, 0, sizeof(*address));
  if (port == 0 || port > 65535) {
    ThrowTypeError(env,
                   "port must be between 1 and 65535, got " +
                       std::to_string(port),
                   "ERR_INVALID_ARG_VALUE");
  }

  auto* v4 = reinterpret_cast<sockaddr_in*>(address);
  if (inet_pton(AF_INET, text.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    return sizeof(*v4);
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(address);
  if (inet_pton(AF_INET6, text.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    return sizeof(*v6);
  }
  ThrowTypeError(env,
                 "address must be a numeric IPv4 or IPv6 address, got \"" +
                     text + "\"",
                 "ERR_INVALID_ARG_VALUE");
}

Napi::Value ConnectProbe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseOrRejection(env, [&] {
    std::string text = StringArg(info, 0, "address");
    uint32_t port = Uint32Arg(info, 1, "port");
    uint32_t timeout_ms = Uint32Arg(info, 2, "timeoutMs");
    std::string netns = OptionalStringArg(info, 3, "netns");
    if (timeout_ms == 0 || timeout_ms > kMaxTimeoutMs) {
      ThrowTypeError(env,
                     "timeoutMs must be between 1 and " +
                         std::to_string(kMaxTimeoutMs) + ", got " +
                         std::to_string(timeout_ms),
                     "ERR_INVALID_ARG_VALUE");
    }

    sockaddr_storage address;
    socklen_t address_len = ParseAddress(env, text, port, &address);
    std::string subject = (address.ss_family == AF_INET6 ? "[" + text + "]"
                                                         : text) +
                          ":" + std::to_string(port);
    return PromiseWorker::Start(new ConnectProbeWorker(
        env, address, address_len, std::move(subject), timeout_ms,
        std::move(netns)));
  });
}

}  // namespace

void InitConnectProbe(Napi::Env env, Napi::Object exports) {
  exports.Set("connectProbe",
              Napi::Function::New<ConnectProbe>(env, "connectProbe"));
}

}  // namespace zerohold
