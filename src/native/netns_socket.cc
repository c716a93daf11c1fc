// SPDX-License-Identifier: Apache-2.0
#include "netns_socket.h"

#include <errno.h>
#include <sys/socket.h>

#include <string>

#include "args.h"
#include "netns.h"
#include "sys_error.h"

namespace zerohold {

namespace {

Napi::Value NetnsSocket(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t family = Uint32Arg(info, 0, "family");
  std::string netns = StringArg(info, 1, "netns");
  if (family != 4 && family != 6) {
    ThrowTypeError(env, "family must be 4 or 6, got " + std::to_string(family),
                   "ERR_INVALID_ARG_VALUE");
  }

  // The JS thread leaves its namespace only for the socket() call, and
  // the scope's destructor brings it back before any other JS runs.
  int fd;
  int err = 0;
  {
    NetnsScope scope;
    SysError error;
    if (!scope.Enter(netns, &error)) throw ToJsError(env, error);
    fd = socket(family == 4 ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_CLOEXEC,
                0);
    if (fd < 0) err = errno;
  }
  if (fd < 0) ThrowSysError(env, "socket", netns, err);
  return Napi::Number::New(env, fd);
}

}  // namespace

void InitNetnsSocket(Napi::Env env, Napi::Object exports) {
  exports.Set("netnsSocket",
              Napi::Function::New<NetnsSocket>(env, "netnsSocket"));
}

}  // namespace zerohold
