// SPDX-License-Identifier: Apache-2.0
#include "args.h"

#include <cmath>

#include "sys_error.h"

namespace zerohold {

namespace {

[[noreturn]] void ThrowArgType(Napi::Env env, const char* name,
                               const char* expected) {
  ThrowTypeError(env, std::string(name) + " must be " + expected,
                 "ERR_INVALID_ARG_TYPE");
}

}  // namespace

std::string StringArg(const Napi::CallbackInfo& info, size_t index,
                      const char* name) {
  if (!info[index].IsString()) ThrowArgType(info.Env(), name, "a string");
  return info[index].As<Napi::String>().Utf8Value();
}

std::string OptionalStringArg(const Napi::CallbackInfo& info, size_t index,
                              const char* name) {
  if (info[index].IsUndefined() || info[index].IsNull()) return "";
  return StringArg(info, index, name);
}

bool BoolArg(const Napi::CallbackInfo& info, size_t index, const char* name) {
  if (!info[index].IsBoolean()) ThrowArgType(info.Env(), name, "a boolean");
  return info[index].As<Napi::Boolean>().Value();
}

Napi::Buffer<uint8_t> BufferArg(const Napi::CallbackInfo& info, size_t index,
                                const char* name) {
  if (!info[index].IsBuffer()) ThrowArgType(info.Env(), name, "a Buffer");
  return info[index].As<Napi::Buffer<uint8_t>>();
}

Napi::Object ObjectArg(const Napi::CallbackInfo& info, size_t index,
                       const char* name) {
  if (!info[index].IsObject()) ThrowArgType(info.Env(), name, "an object");
  return info[index].As<Napi::Object>();
}

uint32_t Uint32Value(Napi::Env env, const Napi::Value& value,
                     const char* name) {
  if (!value.IsNumber()) {
    ThrowArgType(env, name, "an integer between 0 and 4294967295");
  }

  double number = value.As<Napi::Number>().DoubleValue();
  if (!(number >= 0 && number <= UINT32_MAX) || std::trunc(number) != number) {
    ThrowTypeError(env,
                   std::string(name) +
                       " must be an integer between 0 and 4294967295",
                   "ERR_INVALID_ARG_VALUE");
  }
  return static_cast<uint32_t>(number);
}

uint32_t Uint32Arg(const Napi::CallbackInfo& info, size_t index,
                   const char* name) {
  return Uint32Value(info.Env(), info[index], name);
}

uint32_t OptionalUint32Arg(const Napi::CallbackInfo& info, size_t index,
                           const char* name, uint32_t fallback) {
  if (info[index].IsUndefined()) return fallback;
  return Uint32Arg(info, index, name);
}

}  // namespace zerohold
