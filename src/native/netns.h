// SPDX-License-Identifier: Apache-2.0
#ifndef ZEROHOLD_NATIVE_NETNS_H
#define ZEROHOLD_NATIVE_NETNS_H

#include <string>

#include "sys_error.h"
#include "unique_fd.h"

namespace zerohold {

// Moves the calling thread into another network namespace for the lifetime
// of the scope. Calls that name a device (if_nametoindex, XDP and tc attach,
// live-frames test runs) act in the calling thread's namespace. The
// destructor always moves the thread back, because the libuv pool reuses
// its threads. On the JS thread, use it only within one synchronous call,
// so that no other JS runs in the other namespace.
class NetnsScope {
 public:
  NetnsScope() = default;
  ~NetnsScope();
  NetnsScope(const NetnsScope&) = delete;
  NetnsScope& operator=(const NetnsScope&) = delete;

  // Enters the namespace bound at path, such as /run/netns/NAME. An empty
  // path keeps the current namespace. On failure, fills error and leaves
  // the thread where it was.
  bool Enter(const std::string& path, SysError* error);

 private:
  UniqueFd original_;  // valid iff the thread was moved
};

}  // namespace zerohold

#endif  // ZEROHOLD_NATIVE_NETNS_H
