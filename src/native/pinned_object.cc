// SPDX-License-Identifier: Apache-2.0
#include "pinned_object.h"

#include <bpf/bpf.h>
#include <errno.h>
#include <unistd.h>

#include <algorithm>

#include "sys_error.h"

namespace zerohold {

namespace {

// Returns the kind of a bpf file descriptor, such as "bpf-map", from its
// /proc/self/fd link "anon_inode:bpf-map"; "" if it is no anonymous inode.
// Linux 6.18 names links "bpf-link"; older kernels spell it "bpf_link", so
// underscores become dashes.
std::string FdKind(int fd) {
  std::string link = "/proc/self/fd/" + std::to_string(fd);
  char target[64];
  ssize_t length = readlink(link.c_str(), target, sizeof(target) - 1);
  if (length < 0) return "";
  target[length] = '\0';

  constexpr const char kPrefix[] = "anon_inode:";
  std::string name(target);
  if (name.compare(0, sizeof(kPrefix) - 1, kPrefix) != 0) return "";

  std::string kind = name.substr(sizeof(kPrefix) - 1);
  std::replace(kind.begin(), kind.end(), '_', '-');
  return kind;
}

}  // namespace

UniqueFd OpenPinned(Napi::Env env, const std::string& path,
                    const char* expected_kind) {
  UniqueFd fd(bpf_obj_get(path.c_str()));
  if (!fd.Valid()) ThrowSysError(env, "bpf_obj_get", path, errno);

  std::string kind = FdKind(fd.Get());
  if (kind != expected_kind) {
    SysError error = MakeSysError("bpf_obj_get", path, EINVAL);
    error.detail = "the pinned object is a " +
                   (kind.empty() ? std::string("different kind") : kind) +
                   ", expected a " + expected_kind;
    throw ToJsError(env, error);
  }
  return fd;
}

}  // namespace zerohold
