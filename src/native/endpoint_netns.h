// SPDX-License-Identifier: Apache-2.0
#ifndef ZEROHOLD_NATIVE_ENDPOINT_NETNS_H
#define ZEROHOLD_NATIVE_ENDPOINT_NETNS_H

#include <napi.h>

namespace zerohold {

// Registers endpointNetns(address, netns?), which finds the network
// namespace on this node that has an endpoint's address, from the
// namespace bound at netns (or the process's own). It resolves with
// { netnsId, device } or { reason }:
//
// - netnsId -1 and device "lo" when the address is local: an endpoint on
//   the host network;
// - else the id of a pod's namespace relative to the caller's (a veth
//   peer's IFLA_LINK_NETNSID) and the veth on this side, for the first
//   pod namespace that has the address on an interface. It tries the
//   veth that the route to the address takes, then the ports of the
//   bridge that it takes, then every other veth to a namespace;
// - reason, a sentence, when no namespace on this node has the address:
//   the endpoint runs on another node, or in a pod that this node's
//   namespace reaches through no veth (ipvlan, macvlan).
//
// It rejects only when a netlink request fails.
void InitEndpointNetns(Napi::Env env, Napi::Object exports);

}  // namespace zerohold

#endif  // ZEROHOLD_NATIVE_ENDPOINT_NETNS_H
