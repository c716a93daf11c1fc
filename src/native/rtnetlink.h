// SPDX-License-Identifier: Apache-2.0
#ifndef ZEROHOLD_NATIVE_RTNETLINK_H
#define ZEROHOLD_NATIVE_RTNETLINK_H

#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <string.h>

#include <cstddef>
#include <cstdint>
#include <functional>
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
