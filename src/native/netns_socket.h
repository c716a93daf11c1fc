// SPDX-License-Identifier: Apache-2.0
#ifndef ZEROHOLD_NATIVE_NETNS_SOCKET_H
#define ZEROHOLD_NATIVE_NETNS_SOCKET_H

#include <napi.h>

namespace zerohold {

// Registers netnsSocket(family, netns), which creates an unconnected TCP
// socket of family 4 or 6 inside the network namespace bound at netns and
// returns its file descriptor. A socket stays in the namespace it was
// created in, so a net.Socket opened on the descriptor connects from
// there while the process stays where it is.
void InitNetnsSocket(Napi::Env env, Napi::Object exports);

}  // namespace zerohold

#endif  // ZEROHOLD_NATIVE_NETNS_SOCKET_H
