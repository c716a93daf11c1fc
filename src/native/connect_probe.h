// SPDX-License-Identifier: Apache-2.0
#ifndef ZEROHOLD_NATIVE_CONNECT_PROBE_H
#define ZEROHOLD_NATIVE_CONNECT_PROBE_H

#include <napi.h>

namespace zerohold {

// Registers connectProbe(address, port, timeoutMs, netns?), which opens a
// TCP connection on a worker thread from inside the given network
// namespace and closes it again. It resolves with null once the handshake
// completes, or with the errno name of the failure: ECONNREFUSED for a
// reset, ETIMEDOUT when no reply came within timeoutMs, EHOSTUNREACH
// and the like. It rejects only when the probe cannot start, such as for
// an address that is not an IP address or a namespace that cannot be
// entered.
void InitConnectProbe(Napi::Env env, Napi::Object exports);

}  // namespace zerohold

#endif  // ZEROHOLD_NATIVE_CONNECT_PROBE_H
