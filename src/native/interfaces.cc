// SPDX-License-Identifier: Apache-2.0
#include "interfaces.h"

#include <errno.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "args.h"
#include "netns.h"
#include "promise_worker.h"
#include "rtnetlink.h"
#include "sys_error.h"

namespace zerohold {

namespace {

using InterfaceEntry = LinkEntry;

// Netlink sizes a dump reply to the reader's buffer, up to 32 KiB
// (net/netlink/af_netlink.c), and a notification carries one message, so
// this fits either with room to spare. A longer datagram is cut, and
// MSG_TRUNC reports it.
constexpr size_t kReceiveBufferBytes = 64 << 10;

// Dumps that the kernel marked as inconsistent (NLM_F_DUMP_INTR, because
// an interface changed during the dump) before listInterfaces gives up,
// and the pause before the first retry, which doubles with each retry. A
// CNI plugin that sets up several pods at once changes interfaces every
// few milliseconds, so back-to-back dumps can all be interrupted.
constexpr int kMaxDumpAttempts = 6;
constexpr useconds_t kFirstRetryPauseMicroseconds = 2000;

// Bounds one wait of a dump for its next reply. rtnetlink queues each part
// when the previous one is read, so this only bounds a worker thread in
// the unexpected case.
constexpr time_t kReplyTimeoutSeconds = 5;

// Datagrams that one wakeup of the monitor reads. The rest wait for the
// next loop iteration (the poll is level-triggered), so a burst of
// notifications cannot starve timers and other I/O.
constexpr int kMaxDatagramsPerWakeup = 256;

// Receive queue that the monitor requests, capped by net.core.rmem_max. A
// node that creates many pods at once sends a few notifications per
// interface.
constexpr uint32_t kMonitorReceiveBufferBytes = 1 << 20;

// Sends an RTM_GETLINK dump request with sequence number seq and reads the
// replies into entries. Returns 0, -EAGAIN when the kernel marked the dump
// as inconsistent, or another negative errno.
int DumpInterfaces(int socket_fd, uint32_t seq, std::vector<InterfaceEntry>* entries) {
  ifinfomsg info = {};
  info.ifi_family = AF_UNSPEC;
  RtnetlinkRequest request(RTM_GETLINK, NLM_F_DUMP, seq, &info, sizeof(info));

  bool interrupted = false;
  int err = RtnetlinkTransact(
      socket_fd, &request,
      [&](const nlmsghdr* message) {
        if (message->nlmsg_type != RTM_NEWLINK) return;
        InterfaceEntry entry;
        if (ParseLinkMessage(message, &entry)) entries->push_back(std::move(entry));
      },
      &interrupted);
  if (err < 0) return err;
  return interrupted ? -EAGAIN : 0;
}

class ListWorker : public PromiseWorker {
 public:
  ListWorker(Napi::Env env, std::string netns)
      : PromiseWorker(env, "zerohold.listInterfaces"), netns_(std::move(netns)) {}

 protected:
  void Execute() override {
    NetnsScope scope;
    if (!EnterNetns(&scope, netns_)) return;

    SysError error;
    UniqueFd socket_fd = OpenRequestSocket(kReplyTimeoutSeconds, &error);
    if (!socket_fd.Valid()) {
      Fail(std::move(error));
      return;
    }

    // Each attempt has its own sequence number, so that the rest of an
    // abandoned dump is skipped.
    int err = -EAGAIN;
    useconds_t pause = kFirstRetryPauseMicroseconds;
    for (uint32_t attempt = 1; attempt <= kMaxDumpAttempts && err == -EAGAIN; attempt++) {
      if (attempt > 1) {
        usleep(pause);
        pause *= 2;
      }
      entries_.clear();
      err = DumpInterfaces(socket_fd.Get(), attempt, &entries_);
    }
    if (err != 0) Fail(MakeSysError("RTM_GETLINK", netns_.empty() ? "dump" : netns_, err));
  }

  Napi::Value Result() override {
    Napi::Env env = Env();
    Napi::Array list = Napi::Array::New(env, entries_.size());
    for (size_t i = 0; i < entries_.size(); i++) {
      Napi::Object entry = Napi::Object::New(env);
      entry.Set("ifindex", entries_[i].ifindex);
      entry.Set("name", entries_[i].name);
      entry.Set("linkType", entries_[i].link_type);
      entry.Set("kind", entries_[i].kind);
      list.Set(i, entry);
    }
    return list;
  }

 private:
  std::string netns_;
  std::vector<InterfaceEntry> entries_;
};

Napi::Value ListInterfaces(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseOrRejection(env, [&] {
    std::string netns = OptionalStringArg(info, 0, "netns");
    return PromiseWorker::Start(new ListWorker(env, std::move(netns)));
  });
}

}  // namespace

void InterfaceMonitor::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function constructor = DefineClass(env, "InterfaceMonitor",
                                           {
                                               InstanceMethod<&InterfaceMonitor::Start>("start"),
                                               InstanceMethod<&InterfaceMonitor::Close>("close"),
                                           });
  exports.Set("InterfaceMonitor", constructor);
}

InterfaceMonitor::InterfaceMonitor(const Napi::CallbackInfo& info) : ObjectWrap(info) {
  Napi::Env env = info.Env();
  std::string netns = OptionalStringArg(info, 0, "netns");
  if (!info[1].IsFunction()) ThrowTypeError(env, "onChange must be a function", "ERR_INVALID_ARG_TYPE");
  uint32_t receive_buffer = OptionalUint32Arg(info, 2, "receiveBufferBytes", kMonitorReceiveBufferBytes);

  // A netlink socket stays in the namespace it was created in. The JS
  // thread leaves its own only for the socket() call.
  int err = 0;
  {
    NetnsScope scope;
    SysError error;
    if (!scope.Enter(netns, &error)) throw ToJsError(env, error);
    socket_.Reset(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE));
    if (!socket_.Valid()) err = errno;
  }
  if (err != 0) ThrowSysError(env, "socket", "NETLINK_ROUTE", err);

  // A smaller queue only makes an overrun more likely, which the caller
  // handles, so a failure here is not an error.
  int receive_buffer_size = static_cast<int>(std::min<uint32_t>(receive_buffer, INT32_MAX));
  setsockopt(socket_.Get(), SOL_SOCKET, SO_RCVBUF, &receive_buffer_size, sizeof(receive_buffer_size));

  sockaddr_nl address = {};
  address.nl_family = AF_NETLINK;
  address.nl_groups = RTMGRP_LINK;
  if (bind(socket_.Get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    ThrowSysError(env, "bind", "RTMGRP_LINK", errno);
  }

  buffer_.resize(kReceiveBufferBytes);
  on_change_ = Napi::Persistent(info[1].As<Napi::Function>());
  async_context_ = std::make_unique<Napi::AsyncContext>(env, "zerohold.InterfaceMonitor");

  uv_loop_t* loop = nullptr;
  napi_status status = napi_get_uv_event_loop(env, &loop);
  NAPI_THROW_IF_FAILED_VOID(env, status);
  poll_ = new uv_poll_t;
  int poll_err = uv_poll_init(loop, poll_, socket_.Get());
  if (poll_err != 0) {
    delete poll_;
    poll_ = nullptr;
    ThrowSysError(env, "uv_poll_init", "", -poll_err);
  }
  poll_->data = this;
}

InterfaceMonitor::~InterfaceMonitor() {
  // A started monitor holds a reference to itself, so it is only
  // finalized when closed, or when the environment shuts down.
  Release();
}

void InterfaceMonitor::Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (poll_ == nullptr) ThrowError(env, "interface monitor is closed", "ERR_ZH_CLOSED");
  if (started_) return;

  int err = uv_poll_start(poll_, UV_READABLE, OnReadable);
  if (err != 0) ThrowSysError(env, "uv_poll_start", "", -err);
  started_ = true;
  Ref();
}

void InterfaceMonitor::Close(const Napi::CallbackInfo&) {
  StopPolling();
  Release();
}

void InterfaceMonitor::StopPolling() {
  if (!started_) return;
  uv_poll_stop(poll_);
  started_ = false;
  Unref();
}

void InterfaceMonitor::Release() {
  if (poll_ != nullptr) {
    // libuv still owns the handle until the close callback runs.
    poll_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(poll_),
             [](uv_handle_t* handle) { delete reinterpret_cast<uv_poll_t*>(handle); });
    poll_ = nullptr;
  }
  socket_.Reset();
  on_change_.Reset();
}

void InterfaceMonitor::Drain(Napi::Env env, bool overrun) {
  Napi::Array events = Napi::Array::New(env);
  std::vector<char>& buffer = buffer_;

  for (int datagram = 0; datagram < kMaxDatagramsPerWakeup; datagram++) {
    sockaddr_nl sender = {};
    socklen_t sender_length = sizeof(sender);
    ssize_t length = recvfrom(socket_.Get(), buffer.data(), buffer.size(), MSG_TRUNC,
                              reinterpret_cast<sockaddr*>(&sender), &sender_length);
    if (length < 0 && errno == EINTR) continue;
    if (length < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    // The kernel dropped notifications because the queue was full. The
    // socket stays usable.
    if (length < 0 && errno == ENOBUFS) {
      overrun = true;
      continue;
    }
    if (length < 0) ThrowSysError(env, "recvfrom", "RTMGRP_LINK", errno);
    if (static_cast<size_t>(length) > buffer.size()) {
      overrun = true;
      continue;
    }
    // Only the kernel (port id 0) sends link notifications.
    if (sender.nl_pid != 0) continue;

    auto remaining = static_cast<uint32_t>(length);
    for (auto* message = reinterpret_cast<const nlmsghdr*>(buffer.data()); NLMSG_OK(message, remaining);
         message = NLMSG_NEXT(message, remaining)) {
      if (message->nlmsg_type != RTM_NEWLINK && message->nlmsg_type != RTM_DELLINK) continue;

      InterfaceEntry entry;
      if (!ParseLinkMessage(message, &entry)) continue;
      Napi::Object event = Napi::Object::New(env);
      event.Set("type", message->nlmsg_type == RTM_NEWLINK ? "new" : "del");
      event.Set("ifindex", entry.ifindex);
      event.Set("name", entry.name);
      events.Set(events.Length(), event);
    }
  }

  if (events.Length() == 0 && !overrun) return;
  on_change_.MakeCallback(Value(), {events, Napi::Boolean::New(env, overrun)}, *async_context_);
}

void InterfaceMonitor::OnReadable(uv_poll_t* handle, int status, int) {
  auto* self = static_cast<InterfaceMonitor*>(handle->data);
  if (self == nullptr) return;

  Napi::Env env = self->Env();
  Napi::HandleScope scope(env);

  // There is no JS caller to throw to: an exception from onChange or a
  // failed read becomes an uncaught exception, as in RingBuffer.
  try {
    if (status >= 0) {
      self->Drain(env, false);
      return;
    }

    // libuv reports POLLERR as UV_EBADF and stops the handle. A netlink
    // socket raises it when its queue overflowed and notifications were
    // lost: the next read returns that error (ENOBUFS) and clears it. So
    // the monitor reports an overrun and polls again. An error that is not
    // cleared fails the read in Drain().
    self->Drain(env, true);
    if (self->poll_ != nullptr && self->started_) {
      int err = uv_poll_start(self->poll_, UV_READABLE, OnReadable);
      if (err != 0) ThrowSysError(env, "uv_poll_start", "interface monitor", -err);
    }
  } catch (const Napi::Error& error) {
    napi_fatal_exception(env, error.Value());
  }
}

void InitInterfaces(Napi::Env env, Napi::Object exports) {
  exports.Set("listInterfaces", Napi::Function::New<ListInterfaces>(env, "listInterfaces"));
  InterfaceMonitor::Init(env, exports);
}

}  // namespace zerohold
