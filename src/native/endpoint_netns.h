// SPDX-License-Identifier: Apache-2.0
#ifndef ZEROHOLD_NATIVE_ENDPOINT_NETNS_H
#define ZEROHOLD_NATIVE_ENDPOINT_NETNS_H

#include <napi.h>

namespace zerohold {

// Registers two functions that work from the namespace bound at netns
// (or the process's own) on a libuv pool thread.
//
// endpointNetns(address, netns?) finds the network namespace on this node
// that has an endpoint's address. It resolves with { netnsId, device }
// or { reason }:
//
// - netnsId -1 and device "lo" when the address is local: an endpoint on
//   the host network;
// - else the id of a pod's namespace relative to the caller's (the
//   IFLA_LINK_NETNSID of a veth or netkit device) and that device, for
//   the first pod namespace that has the address on an interface. It
//   tries the device that the route to the address takes, then the
//   ports of the bridge that it takes, then every other pod's device;
// - reason, a sentence, when no namespace on this node has the address:
//   the endpoint runs on another node, or in a pod that this node's
//   namespace reaches through no such device (ipvlan, macvlan), or no
//   route leads to it.
//
// udpSocketBound(program, frame, address, netns?, hintNetnsId?) finds the
// namespace the same way, trying hintNetnsId first, and runs program
// (zh_tc_udp_bound) with BPF_PROG_RUN on frame, with the namespace id in
// cb[0] of the context. It resolves with { retval, netnsId }, or with
// { reason } when no namespace was found or the one found lost the
// address during the run.
//
// Both reject only when a netlink request or the run fails.
void InitEndpointNetns(Napi::Env env, Napi::Object exports);

}  // namespace zerohold

#endif  // ZEROHOLD_NATIVE_ENDPOINT_NETNS_H
