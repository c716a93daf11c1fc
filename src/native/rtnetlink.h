// SPDX-License-Identifier: Apache-2.0
#ifndef ZEROHOLD_NATIVE_RTNETLINK_H
#define ZEROHOLD_NATIVE_RTNETLINK_H

#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <cstddef>
#include <cstdint>

#include "sys_error.h"
#include "unique_fd.h"

namespace zerohold {

// Returns the attribute of type in the attributes from start to
// start + length, or nullptr.
inline const rtattr* FindAttribute(const void* start, size_t length,
                                   uint16_t type) {
  for (auto* attribute = static_cast<const rtattr*>(start);
       RTA_OK(attribute, length); attribute = RTA_NEXT(attribute, length)) {
    if ((attribute->rta_type & NLA_TYPE_MASK) == type) return attribute;
  }
  return nullptr;
}

// Opens a blocking rtnetlink socket in the calling thread's network
// namespace for requests whose replies a recv() waits for at most
// timeout_seconds. On failure, fills error and returns an empty UniqueFd.
inline UniqueFd OpenRequestSocket(time_t timeout_seconds, SysError* error) {
  UniqueFd socket_fd(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
  if (!socket_fd.Valid()) {
    *error = MakeSysError("socket", "NETLINK_ROUTE", errno);
    return socket_fd;
  }
  struct timeval timeout = {timeout_seconds, 0};
  if (setsockopt(socket_fd.Get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout)) != 0) {
    *error = MakeSysError("setsockopt", "SO_RCVTIMEO", errno);
    socket_fd.Reset();
  }
  return socket_fd;
}

}  // namespace zerohold

#endif  // ZEROHOLD_NATIVE_RTNETLINK_H
