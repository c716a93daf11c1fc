// SPDX-License-Identifier: Apache-2.0
#include "sys_error.h"

#include <string.h>

#include <cstdlib>

namespace zerohold {

namespace {

// ENOTSUPP is a kernel-internal errno value, but the bpf() syscall returns
// it, for example for batch operations. glibc has no name for it.
constexpr int kEnotsupp = 524;

}  // namespace

const char* ErrnoName(int err) {
  const char* name = strerrorname_np(err);
  if (name != nullptr) return name;

  return err == kEnotsupp ? "ENOTSUPP" : "EUNKNOWN";
}

const char* ErrnoDescription(int err) {
  const char* description = strerrordesc_np(err);
  if (description != nullptr) return description;

  return err == kEnotsupp ? "Operation is not supported" : "Unknown error";
}

std::string SysError::Message() const {
  std::string message = syscall;
  if (!subject.empty()) message += "(" + subject + ")";
  message += " failed: ";
  message += ErrnoDescription(err);
  message += " (";
  message += ErrnoName(err);
  message += ")";

  if (!detail.empty()) message += "\n" + detail;
  return message;
}

SysError MakeSysError(const char* syscall, std::string subject, int err) {
  SysError error;
  error.syscall = syscall;
  error.subject = std::move(subject);
  error.err = std::abs(err);
  return error;
}

Napi::Error ToJsError(Napi::Env env, const SysError& error) {
  Napi::Error js = Napi::Error::New(env, error.Message());
  js.Set("code", ErrnoName(error.err));
  js.Set("errno", Napi::Number::New(env, error.err));
  js.Set("syscall", error.syscall);
  return js;
}

void ThrowSysError(Napi::Env env, const char* syscall,
                   const std::string& subject, int err) {
  throw ToJsError(env, MakeSysError(syscall, subject, err));
}

void ThrowTypeError(Napi::Env env, const std::string& message,
                    const char* code) {
  Napi::TypeError error = Napi::TypeError::New(env, message);
  error.Set("code", code);
  throw error;
}

void ThrowError(Napi::Env env, const std::string& message, const char* code) {
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", code);
  throw error;
}

}  // namespace zerohold
