// SPDX-License-Identifier: Apache-2.0
#ifndef ZEROHOLD_NATIVE_UNIQUE_FD_H
#define ZEROHOLD_NATIVE_UNIQUE_FD_H

#include <unistd.h>

#include <utility>

namespace zerohold {

// Owner of one file descriptor, closed on destruction. -1 means empty.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.Release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    Reset(other.Release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { Reset(); }

  int Get() const { return fd_; }
  bool Valid() const { return fd_ >= 0; }

  int Release() { return std::exchange(fd_, -1); }

  void Reset(int fd = -1) {
    if (fd_ >= 0) close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

}  // namespace zerohold

#endif  // ZEROHOLD_NATIVE_UNIQUE_FD_H
