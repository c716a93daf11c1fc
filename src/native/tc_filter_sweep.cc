// SPDX-License-Identifier: Apache-2.0
#include "tc_filter_sweep.h"

#include <arpa/inet.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/netlink.h>
#include <linux/pkt_cls.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <string.h>
#include <sys/socket.h>

#include <set>
#include <string>
#include <vector>

#include "args.h"
#include "promise_worker.h"
#include "rtnetlink.h"
#include "unique_fd.h"

namespace zerohold {

namespace {

struct FilterProgram {
  std::string name;  // TCA_BPF_NAME: libbpf writes "<program>:[<id>]"
  uint32_t id = 0;   // TCA_BPF_ID
};

struct DetachedFilter {
  std::string ifname;
  uint32_t ifindex;
  uint32_t prog_id;
  std::string prog_name;
};

struct DeviceError {
  std::string ifname;
  SysError error;
};

// Replies to earlier requests that a query skips before it gives up. Each
// request gets one reply, so more than a few means a confused socket.
constexpr int kMaxStrayReplies = 8;

// How long a query waits for its reply. rtnetlink queues the reply before
// send() returns, so this only bounds a worker thread in the unexpected
// case.
constexpr time_t kReplyTimeoutSeconds = 5;

// Reads the program of the bpf filter at handle and priority on the
// ingress of ifindex with an RTM_GETTFILTER request. Unlike
// bpf_prog_get_fd_by_id(), which would name the program from its id, the
// request needs no capability. Returns 0 or a negative errno: -ENOENT for
// no filter there, -EINVAL for a device without a clsact qdisc, -ENODEV
// for a device that is gone. seq must differ from earlier requests on the
// socket, so that a late reply to one of them is not taken for this one.
int QueryFilterProgram(int socket_fd, uint32_t seq, uint32_t ifindex,
                       uint32_t handle, uint32_t priority,
                       FilterProgram* program) {
  struct {
    nlmsghdr header;
    tcmsg tc;
    char attributes[32];
  } request = {};
  request.header.nlmsg_len = NLMSG_LENGTH(sizeof(tcmsg));
  request.header.nlmsg_type = RTM_GETTFILTER;
  request.header.nlmsg_flags = NLM_F_REQUEST;
  request.header.nlmsg_seq = seq;
  request.tc.tcm_family = AF_UNSPEC;
  request.tc.tcm_ifindex = static_cast<int>(ifindex);
  request.tc.tcm_parent = TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS);
  request.tc.tcm_handle = handle;
  request.tc.tcm_info = TC_H_MAKE(priority << 16, htons(ETH_P_ALL));

  static const char kKind[] = "bpf";
  auto* kind = reinterpret_cast<rtattr*>(reinterpret_cast<char*>(&request) +
                                         NLMSG_ALIGN(request.header.nlmsg_len));
  kind->rta_type = TCA_KIND;
  kind->rta_len = RTA_LENGTH(sizeof(kKind));
  memcpy(RTA_DATA(kind), kKind, sizeof(kKind));
  request.header.nlmsg_len = NLMSG_ALIGN(request.header.nlmsg_len) + RTA_ALIGN(kind->rta_len);

  if (send(socket_fd, &request, request.header.nlmsg_len, 0) < 0) return -errno;

  alignas(nlmsghdr) char reply[8192];
  const nlmsghdr* message = nullptr;
  for (int stray = 0; message == nullptr;) {
    if (stray >= kMaxStrayReplies) return -EBADMSG;
    // MSG_TRUNC returns the datagram's full length, so that a reply
    // larger than the buffer is an error instead of a cut message. With
    // SO_RCVTIMEO, a signal handler interrupts recv() even under
    // SA_RESTART.
    ssize_t length = recv(socket_fd, reply, sizeof(reply), MSG_TRUNC);
    if (length < 0 && errno == EINTR) continue;
    if (length < 0) return errno == EAGAIN ? -ETIMEDOUT : -errno;
    if (static_cast<size_t>(length) > sizeof(reply)) return -EMSGSIZE;

    auto* candidate = reinterpret_cast<const nlmsghdr*>(reply);
    if (!NLMSG_OK(candidate, static_cast<uint32_t>(length))) return -EBADMSG;
    if (candidate->nlmsg_seq == seq) message = candidate;
    else stray++;
  }
  if (message->nlmsg_type == NLMSG_ERROR) {
    auto* error = static_cast<const nlmsgerr*>(NLMSG_DATA(message));
    return error->error != 0 ? error->error : -ENOENT;
  }
  if (message->nlmsg_type != RTM_NEWTFILTER) return -EBADMSG;

  const void* attributes = static_cast<const char*>(NLMSG_DATA(message)) + NLMSG_ALIGN(sizeof(tcmsg));
  size_t attributes_length = message->nlmsg_len - NLMSG_LENGTH(sizeof(tcmsg));
  const rtattr* options = FindAttribute(attributes, attributes_length, TCA_OPTIONS);
  if (options == nullptr) return -ENOENT;

  const rtattr* name = FindAttribute(RTA_DATA(options), RTA_PAYLOAD(options), TCA_BPF_NAME);
  const rtattr* id = FindAttribute(RTA_DATA(options), RTA_PAYLOAD(options), TCA_BPF_ID);
  if (name != nullptr) {
    program->name.assign(static_cast<const char*>(RTA_DATA(name)), strnlen(static_cast<const char*>(RTA_DATA(name)), RTA_PAYLOAD(name)));
  }
  if (id != nullptr && RTA_PAYLOAD(id) >= sizeof(uint32_t)) {
    memcpy(&program->id, RTA_DATA(id), sizeof(uint32_t));
  }
  return 0;
}

// Errors of a device that may disappear at any moment, as the veth of a
// deleted pod does, or that has no filter at the position.
bool IsNothingThere(int err) {
  return err == -ENOENT || err == -EINVAL || err == -ENODEV || err == -ENXIO;
}

class SweepWorker : public PromiseWorker {
 public:
  SweepWorker(Napi::Env env, std::vector<std::string> program_names,
              std::set<uint32_t> keep, uint32_t handle, uint32_t priority,
              std::string netns)
      : PromiseWorker(env, "zerohold.detachClsactFilters"),
        program_names_(std::move(program_names)),
        keep_(std::move(keep)),
        handle_(handle),
        priority_(priority),
        netns_(std::move(netns)) {}

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
    struct if_nameindex* devices = if_nameindex();
    if (devices == nullptr) {
      Fail(MakeSysError("if_nameindex", netns_, errno));
      return;
    }
    for (struct if_nameindex* device = devices; device->if_index != 0; device++) {
      if (keep_.count(device->if_index) == 0) DetachIfOurs(socket_fd.Get(), device->if_index, device->if_name);
    }
    if_freenameindex(devices);
  }

  Napi::Value Result() override {
    Napi::Env env = Env();
    Napi::Array detached = Napi::Array::New(env, detached_.size());
    for (size_t i = 0; i < detached_.size(); i++) {
      Napi::Object filter = Napi::Object::New(env);
      filter.Set("ifname", detached_[i].ifname);
      filter.Set("ifindex", detached_[i].ifindex);
      filter.Set("progId", detached_[i].prog_id);
      filter.Set("progName", detached_[i].prog_name);
      detached.Set(i, filter);
    }
    Napi::Array errors = Napi::Array::New(env, errors_.size());
    for (size_t i = 0; i < errors_.size(); i++) {
      Napi::Object error = ToJsError(env, errors_[i].error).Value();
      error.Set("ifname", errors_[i].ifname);
      errors.Set(i, error);
    }

    Napi::Object result = Napi::Object::New(env);
    result.Set("detached", detached);
    result.Set("errors", errors);
    return result;
  }

 private:
  // Detaches the filter at the position on the ingress of ifindex if it
  // runs one of program_names_. A failure is recorded for the device, and
  // the sweep goes on with the next one.
  void DetachIfOurs(int socket_fd, uint32_t ifindex, const char* ifname) {
    FilterProgram program;
    int err = QueryFilterProgram(socket_fd, ++seq_, ifindex, handle_, priority_, &program);
    if (IsNothingThere(err)) return;
    if (err < 0) {
      errors_.push_back({ifname, MakeSysError("RTM_GETTFILTER", std::string(ifname) + " ingress", err)});
      return;
    }

    std::string prog_name;
    for (const std::string& name : program_names_) {
      if (program.name.rfind(name + ":[", 0) == 0) prog_name = name;
    }
    if (prog_name.empty()) return;

    bpf_tc_hook hook = {};
    hook.sz = sizeof(hook);
    hook.ifindex = static_cast<int>(ifindex);
    hook.attach_point = BPF_TC_INGRESS;
    bpf_tc_opts opts = {};
    opts.sz = sizeof(opts);
    opts.handle = handle_;
    opts.priority = priority_;
    err = bpf_tc_detach(&hook, &opts);
    if (IsNothingThere(err)) return;
    if (err < 0) {
      errors_.push_back({ifname, MakeSysError("bpf_tc_detach", std::string(ifname) + " ingress, clsact", err)});
      return;
    }
    detached_.push_back({ifname, ifindex, program.id, prog_name});
  }

  std::vector<std::string> program_names_;
  std::set<uint32_t> keep_;
  uint32_t handle_;
  uint32_t priority_;
  std::string netns_;
  uint32_t seq_ = 0;
  std::vector<DetachedFilter> detached_;
  std::vector<DeviceError> errors_;
};

Napi::Value DetachClsactFilters(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseOrRejection(env, [&] {
    if (!info[0].IsArray() || !info[1].IsArray()) {
      ThrowTypeError(env, "programNames and keepIfindexes must be arrays",
                     "ERR_INVALID_ARG_TYPE");
    }
    std::vector<std::string> names;
    Napi::Array name_values = info[0].As<Napi::Array>();
    for (uint32_t i = 0; i < name_values.Length(); i++) {
      Napi::Value name = name_values.Get(i);
      if (!name.IsString()) {
        ThrowTypeError(env, "programNames must contain strings",
                       "ERR_INVALID_ARG_TYPE");
      }
      names.push_back(name.As<Napi::String>().Utf8Value());
    }
    std::set<uint32_t> keep;
    Napi::Array keep_values = info[1].As<Napi::Array>();
    for (uint32_t i = 0; i < keep_values.Length(); i++) {
      keep.insert(Uint32Value(env, keep_values.Get(i), "keepIfindexes[]"));
    }

    Napi::Object filter = ObjectArg(info, 2, "filter");
    uint32_t handle = Uint32Value(env, filter.Get("handle"), "filter.handle");
    uint32_t priority = Uint32Value(env, filter.Get("priority"), "filter.priority");
    if (handle == 0 || priority == 0 || priority > 0xffff) {
      ThrowTypeError(env, "filter needs a handle other than 0 and a priority in [1, 65535]",
                     "ERR_INVALID_ARG_VALUE");
    }
    std::string netns = OptionalStringArg(info, 3, "netns");

    return PromiseWorker::Start(new SweepWorker(env, std::move(names), std::move(keep),
                                                handle, priority, std::move(netns)));
  });
}

}  // namespace

void InitTcFilterSweep(Napi::Env env, Napi::Object exports) {
  exports.Set("detachClsactFilters",
              Napi::Function::New<DetachClsactFilters>(env, "detachClsactFilters"));
}

}  // namespace zerohold
