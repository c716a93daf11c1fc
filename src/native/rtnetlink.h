// SPDX-License-Identifier: Apache-2.0
#ifndef ZEROHOLD_NATIVE_RTNETLINK_H
#define ZEROHOLD_NATIVE_RTNETLINK_H

#include <errno.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <string.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "sys_error.h"
#include "unique_fd.h"

namespace zerohold {

// Returns the attribute of type in the attributes from start to
// start + length, or nullptr.
inline const rtattr* FindAttribute(const void* start, size_t length,
                                   uint16_t type) {
  for (auto* attribute = static_cast<const rtattr*>(start);
       RTA_OK(attribute, length); attribute = RTA_NEXT(attribute, length)) {
    if ((attribute->rta_type & NLA_TYPE_MASK) == type) return attribute;
  }
  return nullptr;
}

// An interface as an RTM_NEWLINK or RTM_DELLINK message describes it.
struct LinkEntry {
  uint32_t ifindex = 0;
  uint16_t link_type = 0;  // ARPHRD_*
  std::string name;
  std::string kind;     // IFLA_INFO_KIND, such as "veth"; empty for a physical device
  uint32_t master = 0;  // IFLA_MASTER: the bridge of a port, 0 for none
  bool has_link_netnsid = false;
  int32_t link_netnsid = 0;  // IFLA_LINK_NETNSID: the peer's namespace, for a veth or netkit
};

// Copies the string attribute, which the kernel ends with a NUL, or
// clears out when the attribute is missing.
inline void ReadStringAttribute(const rtattr* attribute, std::string* out) {
  if (attribute == nullptr) {
    out->clear();
    return;
  }
  auto* text = static_cast<const char*>(RTA_DATA(attribute));
  out->assign(text, strnlen(text, RTA_PAYLOAD(attribute)));
}

// Reads an RTM_NEWLINK or RTM_DELLINK message. Returns false for a
// message too short to be one, and for one of another family than
// AF_UNSPEC: the bridge sends an AF_BRIDGE RTM_DELLINK when a port leaves
// it, and the port stays.
inline bool ParseLinkMessage(const nlmsghdr* message, LinkEntry* entry) {
  if (message->nlmsg_len < NLMSG_LENGTH(sizeof(ifinfomsg))) return false;

  auto* info = static_cast<const ifinfomsg*>(NLMSG_DATA(message));
  if (info->ifi_family != AF_UNSPEC) return false;
  const void* attributes = IFLA_RTA(info);
  size_t length = IFLA_PAYLOAD(message);

  entry->ifindex = static_cast<uint32_t>(info->ifi_index);
  entry->link_type = info->ifi_type;
  ReadStringAttribute(FindAttribute(attributes, length, IFLA_IFNAME), &entry->name);
  const rtattr* link_info = FindAttribute(attributes, length, IFLA_LINKINFO);
  ReadStringAttribute(link_info == nullptr ? nullptr : FindAttribute(RTA_DATA(link_info), RTA_PAYLOAD(link_info), IFLA_INFO_KIND), &entry->kind);
  if (const rtattr* master = FindAttribute(attributes, length, IFLA_MASTER); master != nullptr && RTA_PAYLOAD(master) >= sizeof(uint32_t)) {
    memcpy(&entry->master, RTA_DATA(master), sizeof(uint32_t));
  }
  if (const rtattr* netnsid = FindAttribute(attributes, length, IFLA_LINK_NETNSID); netnsid != nullptr && RTA_PAYLOAD(netnsid) >= sizeof(int32_t)) {
    memcpy(&entry->link_netnsid, RTA_DATA(netnsid), sizeof(int32_t));
    entry->has_link_netnsid = entry->link_netnsid >= 0;
  }
  return true;
}

// Opens a blocking rtnetlink socket in the calling thread's network
// namespace for requests whose replies a recv() waits for at most
// timeout_seconds. On failure, fills error and returns an empty UniqueFd.
inline UniqueFd OpenRequestSocket(time_t timeout_seconds, SysError* error) {
  UniqueFd socket_fd(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
  if (!socket_fd.Valid()) {
    *error = MakeSysError("socket", "NETLINK_ROUTE", errno);
    return socket_fd;
  }
  struct timeval timeout = {timeout_seconds, 0};
  if (setsockopt(socket_fd.Get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout)) != 0) {
    *error = MakeSysError("setsockopt", "SO_RCVTIMEO", errno);
    socket_fd.Reset();
  }
  return socket_fd;
}

// A request: the netlink header, the message's fixed header and room for
// a few attributes after it.
struct RtnetlinkRequest {
  nlmsghdr header;
  char body[256];

  RtnetlinkRequest(uint16_t type, uint16_t flags, uint32_t seq, const void* fixed, size_t fixed_size) : header(), body() {
    header.nlmsg_len = NLMSG_LENGTH(fixed_size);
    header.nlmsg_type = type;
    header.nlmsg_flags = NLM_F_REQUEST | flags;
    header.nlmsg_seq = seq;
    memcpy(NLMSG_DATA(&header), fixed, fixed_size);
  }

  void AddAttribute(uint16_t type, const void* data, size_t size) {
    auto* attribute = reinterpret_cast<rtattr*>(reinterpret_cast<char*>(&header) + NLMSG_ALIGN(header.nlmsg_len));
    attribute->rta_type = type;
    attribute->rta_len = RTA_LENGTH(size);
    memcpy(RTA_DATA(attribute), data, size);
    header.nlmsg_len = NLMSG_ALIGN(header.nlmsg_len) + RTA_ALIGN(attribute->rta_len);
  }
};

// Netlink sizes a dump's datagrams to the reader's buffer, up to 32 KiB
// (net/netlink/af_netlink.c), so this fits one with room to spare. A
// longer datagram is cut, and MSG_TRUNC reports it.
constexpr size_t kRtnetlinkReplyBufferBytes = 64 << 10;

// Sends a request on a socket from OpenRequestSocket() and passes each
// reply message to on_message until the request is done: after one reply
// to a get, after NLMSG_DONE for a dump. Replies to earlier requests of
// the socket are skipped by sequence number. Sets interrupted, if given,
// when the kernel marked the dump as inconsistent (NLM_F_DUMP_INTR)
// because what it lists changed meanwhile. Returns 0 or -errno, the
// kernel's for a rejected request or a dump that it ended early.
inline int RtnetlinkTransact(int socket_fd, RtnetlinkRequest* request, const std::function<void(const nlmsghdr*)>& on_message,
                             bool* interrupted = nullptr) {
  bool dump = (request->header.nlmsg_flags & NLM_F_DUMP) != 0;
  if (send(socket_fd, &request->header, request->header.nlmsg_len, 0) < 0) return -errno;

  std::vector<char> buffer(kRtnetlinkReplyBufferBytes);
  for (;;) {
    // With SO_RCVTIMEO, a signal handler interrupts recv() even under
    // SA_RESTART.
    ssize_t length = recv(socket_fd, buffer.data(), buffer.size(), MSG_TRUNC);
    if (length < 0 && errno == EINTR) continue;
    if (length < 0) return errno == EAGAIN ? -ETIMEDOUT : -errno;
    if (static_cast<size_t>(length) > buffer.size()) return -EMSGSIZE;

    auto remaining = static_cast<uint32_t>(length);
    for (auto* message = reinterpret_cast<const nlmsghdr*>(buffer.data()); NLMSG_OK(message, remaining);
         message = NLMSG_NEXT(message, remaining)) {
      if (message->nlmsg_seq != request->header.nlmsg_seq) continue;

      if ((message->nlmsg_flags & NLM_F_DUMP_INTR) != 0 && interrupted != nullptr) *interrupted = true;
      if (message->nlmsg_type == NLMSG_ERROR) {
        if (message->nlmsg_len < NLMSG_LENGTH(sizeof(nlmsgerr))) return -EBADMSG;
        // No request here sets NLM_F_ACK, so an error of 0 in the middle
        // of a dump is unexpected, and ending there would return a
        // partial list.
        int error = static_cast<const nlmsgerr*>(NLMSG_DATA(message))->error;
        return error != 0 || !dump ? error : -EBADMSG;
      }
      if (message->nlmsg_type == NLMSG_DONE) {
        int status = 0;
        if (message->nlmsg_len >= NLMSG_LENGTH(sizeof(status))) memcpy(&status, NLMSG_DATA(message), sizeof(status));
        return status < 0 ? status : 0;
      }
      on_message(message);
      if (!dump) return 0;
    }
  }
}

}  // namespace zerohold

#endif  // ZEROHOLD_NATIVE_RTNETLINK_H
