// SPDX-License-Identifier: Apache-2.0
#include "netns.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>

#include <cstdio>
#include <cstdlib>

namespace zerohold {

bool NetnsScope::Enter(const std::string& path, SysError* error) {
  if (path.empty()) return true;

  // The handle to return to is taken before leaving, because the thread
  // cannot name its original namespace once it is elsewhere.
  UniqueFd original(open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  if (!original.Valid()) {
    *error = MakeSysError("open", "/proc/thread-self/ns/net", errno);
    return false;
  }

  UniqueFd target(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!target.Valid()) {
    *error = MakeSysError("open", path, errno);
    return false;
  }

  if (setns(target.Get(), CLONE_NEWNET) != 0) {
    *error = MakeSysError("setns", path, errno);
    return false;
  }

  original_ = std::move(original);
  return true;
}

NetnsScope::~NetnsScope() {
  if (!original_.Valid()) return;

  // A thread left in the wrong namespace would make later, unrelated
  // calls act on the wrong devices or open sockets there. That must never
  // go unnoticed.
  if (setns(original_.Get(), CLONE_NEWNET) != 0) {
    fprintf(stderr,
            "zerohold: cannot return a thread to its network namespace: "
            "%s\n",
            ErrnoDescription(errno));
    abort();
  }
}

}  // namespace zerohold
