// SPDX-License-Identifier: Apache-2.0
#ifndef ZEROHOLD_NATIVE_XDP_H
#define ZEROHOLD_NATIVE_XDP_H

#include <napi.h>

namespace zerohold {

// Registers attachXdp() and queryXdp(). Both run on a worker thread that
// enters the given network namespace, because ifindex names a device in
// that namespace.
void InitXdp(Napi::Env env, Napi::Object exports);

}  // namespace zerohold

#endif  // ZEROHOLD_NATIVE_XDP_H
