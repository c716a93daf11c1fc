// SPDX-License-Identifier: Apache-2.0
#ifndef ZEROHOLD_NATIVE_IF_INDEX_H
#define ZEROHOLD_NATIVE_IF_INDEX_H

#include <napi.h>

namespace zerohold {

// Registers ifNameToIndex(name, netns?), which resolves a device name on a
// worker thread inside the given network namespace, and
// interfaceLinkType(name, netns?), which reads the device's ARPHRD_* type
// there.
void InitIfIndex(Napi::Env env, Napi::Object exports);

}  // namespace zerohold

#endif  // ZEROHOLD_NATIVE_IF_INDEX_H
