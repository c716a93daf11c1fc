// SPDX-License-Identifier: Apache-2.0
#ifndef ZEROHOLD_NATIVE_ARGS_H
#define ZEROHOLD_NATIVE_ARGS_H

#include <napi.h>

#include <cstdint>
#include <string>

namespace zerohold {

// Argument readers for the JS-facing methods. Each throws a TypeError with
// code ERR_INVALID_ARG_TYPE that names the argument when the type is wrong.

std::string StringArg(const Napi::CallbackInfo& info, size_t index,
                      const char* name);

// Returns "" when the argument is undefined or null.
std::string OptionalStringArg(const Napi::CallbackInfo& info, size_t index,
                              const char* name);

bool BoolArg(const Napi::CallbackInfo& info, size_t index, const char* name);

Napi::Buffer<uint8_t> BufferArg(const Napi::CallbackInfo& info, size_t index,
                                const char* name);

Napi::Object ObjectArg(const Napi::CallbackInfo& info, size_t index,
                       const char* name);

// Reads an integer in [0, 2^32 - 1].
uint32_t Uint32Value(Napi::Env env, const Napi::Value& value,
                     const char* name);

uint32_t Uint32Arg(const Napi::CallbackInfo& info, size_t index,
                   const char* name);

// Returns fallback when the argument is undefined.
uint32_t OptionalUint32Arg(const Napi::CallbackInfo& info, size_t index,
                           const char* name, uint32_t fallback);

}  // namespace zerohold

#endif  // ZEROHOLD_NATIVE_ARGS_H
