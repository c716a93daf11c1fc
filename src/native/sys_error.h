// SPDX-License-Identifier: Apache-2.0
#ifndef ZEROHOLD_NATIVE_SYS_ERROR_H
#define ZEROHOLD_NATIVE_SYS_ERROR_H

#include <napi.h>

#include <string>

namespace zerohold {

// A failed libbpf or system call, kept as plain data so a worker thread can
// record it and the JS thread can turn it into an Error later.
struct SysError {
  std::string syscall;  // the failing call, e.g. "bpf_object__load"
  std::string subject;  // what it acted on: a path, map name or device
  int err = 0;          // positive errno
  std::string detail;   // extra lines appended to the message

  std::string Message() const;
};

// Builds a SysError; err may be given as -errno, the libbpf convention.
SysError MakeSysError(const char* syscall, std::string subject, int err);

// Returns the symbolic name of an errno value ("ENOENT"), never null.
// ENOTSUPP (524), which only the kernel defines, has a name too.
const char* ErrnoName(int err);

// Returns the description of an errno value, safe on any thread.
const char* ErrnoDescription(int err);

// Converts to an Error with the properties code, errno and syscall.
Napi::Error ToJsError(Napi::Env env, const SysError& error);

[[noreturn]] void ThrowSysError(Napi::Env env, const char* syscall,
                                const std::string& subject, int err);

// Throws a TypeError for invalid arguments. Node's own codes fit most cases
// (ERR_INVALID_ARG_TYPE, ERR_INVALID_ARG_VALUE).
[[noreturn]] void ThrowTypeError(Napi::Env env, const std::string& message,
                                 const char* code);

// Throws a plain Error with a code, for misuse such as a closed handle.
[[noreturn]] void ThrowError(Napi::Env env, const std::string& message,
                             const char* code);

}  // namespace zerohold

#endif  // ZEROHOLD_NATIVE_SYS_ERROR_H
