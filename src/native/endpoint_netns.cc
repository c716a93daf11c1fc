// SPDX-License-Identifier: Apache-2.0
#include "endpoint_netns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <string.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "args.h"
#include "bpf_program.h"
#include "netns.h"
#include "promise_worker.h"
#include "rtnetlink.h"
#include "sys_error.h"
#include "test_run.h"

namespace zerohold {

namespace {

// Bounds one wait for a reply, which rtnetlink sends at once.
constexpr time_t kReplyTimeoutSeconds = 5;


struct Address {
  int family = 0;
  unsigned char bytes[16] = {};
  size_t length = 0;

  bool Equals(const void* other, size_t other_length) const {
    return other_length == length && memcmp(bytes, other, length) == 0;
  }
};

// Whether a device in the node's namespace leads into a pod's: a veth,
// or the netkit device that Cilium can use in its place, whose peer is in
// another namespace.
bool IsPodDevice(const LinkEntry& link) {
  return (link.kind == "veth" || link.kind == "netkit") && link.has_link_netnsid;
}

// Finds the namespace that has one address, with an rtnetlink socket of
// the calling thread's namespace. Every method that returns false has
// filled error().
class Resolver {
 public:
  Resolver(std::string text, Address address) : text_(std::move(text)), address_(address) {}

  bool Open() {
    socket_ = OpenRequestSocket(kReplyTimeoutSeconds, &error_);
    if (!socket_.Valid()) return false;
    // Address dumps of another namespace (IFA_TARGET_NETNSID) need the
    // strict checking of requests.
    int one = 1;
    if (setsockopt(socket_.Get(), SOL_NETLINK, NETLINK_GET_STRICT_CHK, &one, sizeof(one)) != 0) {
      error_ = MakeSysError("setsockopt", "NETLINK_GET_STRICT_CHK", errno);
      return false;
    }
    return true;
  }

  // Finds the namespace. A hint, the id that an earlier call found, is
  // tried first, with one request. Afterwards found() returns whether
  // netnsid() and device() are set, and reason() explains why not.
  bool Resolve(int32_t hint) {
    found_ = false;
    reason_.clear();
    checked_.clear();
    if (hint >= 0) {
      bool has = false;
      if (!NamespaceHasAddress(hint, &has)) return false;
      if (has) return Found(hint, "");
      checked_.push_back(hint);
    }

    uint32_t oif = 0;
    bool gateway = false;
    if (!RouteDevice(&oif, &gateway)) return false;
    if (found_ || !reason_.empty()) return true;

    // The pods' devices, most likely first: the one that the route takes
    // (routed CNI plugins) or the ports of the bridge that it takes
    // (bridged ones). Then every other pod's, because some plugins route
    // all pods through one device of the host: Cilium sends them through
    // cilium_host, by way of a gateway address of its own.
    LinkEntry out;
    bool have_out = false;
    if (!GetLink(oif, &out, &have_out)) return false;
    std::string out_name = have_out ? out.name : "interface " + std::to_string(oif);
    if (have_out && !gateway && IsPodDevice(out) && (!Check(out) || found_)) return !failed_;

    std::vector<LinkEntry> links;
    if (!DumpLinks(&links)) return false;

    if (have_out && !gateway && out.kind == "bridge") {
      for (const LinkEntry& link : links) {
        if (link.master == out.ifindex && IsPodDevice(link) && (!Check(link) || found_)) return !failed_;
      }
    }
    for (const LinkEntry& link : links) {
      if (IsPodDevice(link) && (!Check(link) || found_)) return !failed_;
    }
    reason_ = "no pod's network namespace on this node has the address " + text_ + " (the route to it leaves through " + out_name +
              (gateway ? " by way of a gateway)" : ")");
    return true;
  }

  // Sets has when the namespace with the given id has the address on one
  // of its interfaces. An id that names no namespace, as after its pod
  // went away, has none.
  bool NamespaceHasAddress(int32_t netnsid, bool* has) {
    *has = false;
    ifaddrmsg header = {};
    header.ifa_family = static_cast<unsigned char>(address_.family);
    RtnetlinkRequest request(RTM_GETADDR, NLM_F_DUMP, NextSeq(), &header, sizeof(header));
    request.AddAttribute(IFA_TARGET_NETNSID, &netnsid, sizeof(netnsid));

    int err = RtnetlinkTransact(socket_.Get(), &request, [&](const nlmsghdr* message) {
      if (message->nlmsg_type != RTM_NEWADDR || message->nlmsg_len < NLMSG_LENGTH(sizeof(ifaddrmsg))) return;
      auto* reply = static_cast<const ifaddrmsg*>(NLMSG_DATA(message));
      const void* attributes = IFA_RTA(reply);
      size_t length = IFA_PAYLOAD(message);
      // IFA_LOCAL is the interface's own address on point-to-point links,
      // where IFA_ADDRESS is the peer's.
      const rtattr* local = FindAttribute(attributes, length, IFA_LOCAL);
      const rtattr* attribute = local != nullptr ? local : FindAttribute(attributes, length, IFA_ADDRESS);
      if (attribute != nullptr && address_.Equals(RTA_DATA(attribute), RTA_PAYLOAD(attribute))) *has = true;
    });
    // The kernel returns EINVAL both for an id that names no namespace and
    // for a request that it rejects, so the devices decide which it was.
    if (err == -EINVAL) return !NamespaceExists(netnsid, err);
    if (err < 0) return Failed(MakeSysError("RTM_GETADDR", "namespace id " + std::to_string(netnsid), err));
    return true;
  }

  bool found() const { return found_; }
  int32_t netnsid() const { return netnsid_; }
  const std::string& device() const { return device_; }
  const std::string& reason() const { return reason_; }
  const SysError& error() const { return error_; }

 private:
  // Looks the address up in the routing tables. Sets found_ for a local
  // address, and reason_ for one without a usable unicast route.
  // Otherwise it fills oif, and gateway when the route has one.
  bool RouteDevice(uint32_t* oif, bool* gateway) {
    rtmsg route = {};
    route.rtm_family = static_cast<unsigned char>(address_.family);
    route.rtm_dst_len = static_cast<unsigned char>(address_.length * 8);
    RtnetlinkRequest request(RTM_GETROUTE, 0, NextSeq(), &route, sizeof(route));
    request.AddAttribute(RTA_DST, address_.bytes, address_.length);

    unsigned char type = RTN_UNSPEC;
    int err = RtnetlinkTransact(socket_.Get(), &request, [&](const nlmsghdr* message) {
      if (message->nlmsg_type != RTM_NEWROUTE || message->nlmsg_len < NLMSG_LENGTH(sizeof(rtmsg))) return;
      auto* reply = static_cast<const rtmsg*>(NLMSG_DATA(message));
      type = reply->rtm_type;
      const void* attributes = RTM_RTA(reply);
      size_t length = RTM_PAYLOAD(message);
      if (const rtattr* attribute = FindAttribute(attributes, length, RTA_OIF); attribute && RTA_PAYLOAD(attribute) >= sizeof(uint32_t)) {
        memcpy(oif, RTA_DATA(attribute), sizeof(uint32_t));
      }
      *gateway = FindAttribute(attributes, length, RTA_GATEWAY) != nullptr || FindAttribute(attributes, length, RTA_VIA) != nullptr;
    });
    // The errors of unreachable, blackhole, prohibit and throw routes.
    if (err == -ENETUNREACH || err == -EHOSTUNREACH || err == -EINVAL || err == -EACCES || err == -EAGAIN) {
      reason_ = "this node has no route to " + text_ + " (" + ErrnoName(-err) + ")";
      return true;
    }
    if (err < 0) return Failed(MakeSysError("RTM_GETROUTE", text_, err));

    if (type == RTN_LOCAL) {
      Found(-1, "lo");
    } else if (type != RTN_UNICAST || *oif == 0) {
      reason_ = "the route to " + text_ + " is not a unicast route through an interface";
    }
    return true;
  }

  // Reads one interface. Leaves exists false for an interface that went
  // away since the route lookup.
  bool GetLink(uint32_t ifindex, LinkEntry* link, bool* exists) {
    ifinfomsg info = {};
    info.ifi_family = AF_UNSPEC;
    info.ifi_index = static_cast<int>(ifindex);
    RtnetlinkRequest request(RTM_GETLINK, 0, NextSeq(), &info, sizeof(info));
    uint32_t mask = RTEXT_FILTER_SKIP_STATS;
    request.AddAttribute(IFLA_EXT_MASK, &mask, sizeof(mask));

    int err = RtnetlinkTransact(socket_.Get(), &request, [&](const nlmsghdr* message) { *exists = message->nlmsg_type == RTM_NEWLINK && ParseLinkMessage(message, link); });
    if (err == -ENODEV) return true;
    if (err < 0) return Failed(MakeSysError("RTM_GETLINK", "interface " + std::to_string(ifindex), err));
    return true;
  }

  // Tells, after an address dump failed with err, whether some device of
  // this namespace still leads to the namespace id. Fills error() and
  // returns true when one does, because then the kernel rejected the
  // request itself.
  bool NamespaceExists(int32_t netnsid, int err) {
    std::vector<LinkEntry> links;
    if (!DumpLinks(&links)) return true;

    bool exists = std::any_of(links.begin(), links.end(), [&](const LinkEntry& link) { return link.has_link_netnsid && link.link_netnsid == netnsid; });
    if (exists) Failed(MakeSysError("RTM_GETADDR", "namespace id " + std::to_string(netnsid), err));
    return exists;
  }

  // Lists the interfaces of this namespace, without their statistics,
  // which would make each message several times longer. A dump that an
  // interface change interrupted may miss a pod, and then the check cannot
  // tell, as for an endpoint on another node.
  bool DumpLinks(std::vector<LinkEntry>* links) {
    ifinfomsg info = {};
    info.ifi_family = AF_UNSPEC;
    RtnetlinkRequest dump(RTM_GETLINK, NLM_F_DUMP, NextSeq(), &info, sizeof(info));
    uint32_t mask = RTEXT_FILTER_SKIP_STATS;
    dump.AddAttribute(IFLA_EXT_MASK, &mask, sizeof(mask));

    int err = RtnetlinkTransact(socket_.Get(), &dump, [&](const nlmsghdr* message) {
      LinkEntry link;
      if (message->nlmsg_type == RTM_NEWLINK && ParseLinkMessage(message, &link)) links->push_back(std::move(link));
    });
    if (err < 0) return Failed(MakeSysError("RTM_GETLINK", "dump", err));
    return true;
  }

  // Looks for the address in the namespace behind a pod's device, unless
  // an earlier call looked there, and records it when it is there.
  bool Check(const LinkEntry& device) {
    // Several devices can lead into one namespace.
    if (std::find(checked_.begin(), checked_.end(), device.link_netnsid) != checked_.end()) return true;
    checked_.push_back(device.link_netnsid);

    bool has = false;
    if (!NamespaceHasAddress(device.link_netnsid, &has)) return false;
    if (has) Found(device.link_netnsid, device.name);
    return true;
  }

  bool Found(int32_t netnsid, std::string device) {
    found_ = true;
    netnsid_ = netnsid;
    device_ = std::move(device);
    return true;
  }

  bool Failed(SysError error) {
    error_ = std::move(error);
    failed_ = true;
    return false;
  }

  uint32_t NextSeq() { return ++seq_; }

  std::string text_;
  Address address_;
  UniqueFd socket_;
  uint32_t seq_ = 0;
  std::vector<int32_t> checked_;  // namespace ids looked in

  bool found_ = false;
  bool failed_ = false;
  int32_t netnsid_ = -1;
  std::string device_;
  std::string reason_;
  SysError error_;
};

class EndpointNetnsWorker : public PromiseWorker {
 public:
  EndpointNetnsWorker(Napi::Env env, std::string text, Address address, std::string netns)
      : PromiseWorker(env, "zerohold.endpointNetns"), resolver_(std::move(text), address), netns_(std::move(netns)) {}

 protected:
  void Execute() override {
    NetnsScope scope;
    if (!EnterNetns(&scope, netns_)) return;
    if (!resolver_.Open() || !resolver_.Resolve(-1)) Fail(resolver_.error());
  }

  Napi::Value Result() override {
    Napi::Env env = Env();
    Napi::Object result = Napi::Object::New(env);
    if (resolver_.found()) {
      result.Set("netnsId", resolver_.netnsid());
      result.Set("device", resolver_.device());
    } else {
      result.Set("reason", resolver_.reason());
    }
    return result;
  }

 private:
  Resolver resolver_;
  std::string netns_;
};

// The prefix of struct __sk_buff that the context of zh_tc_udp_bound
// covers, up to and including cb[0], where the namespace id goes.
constexpr size_t kSkbCb0Offset = 48;
constexpr size_t kSkbContextSize = kSkbCb0Offset + sizeof(int32_t);

// Attempts of UdpBoundWorker when the namespace loses the address between
// the lookup and the run: its pod went away, and another took its id.
constexpr int kUdpBoundAttempts = 2;

class UdpBoundWorker : public PromiseWorker {
 public:
  UdpBoundWorker(Napi::Env env, UniqueFd prog_fd, std::string prog_name, std::vector<uint8_t> frame, std::string text, Address address,
                 std::string netns, int32_t hint)
      : PromiseWorker(env, "zerohold.udpSocketBound"),
        prog_fd_(std::move(prog_fd)),
        prog_name_(std::move(prog_name)),
        frame_(std::move(frame)),
        text_(text),
        resolver_(std::move(text), address),
        netns_(std::move(netns)),
        hint_(hint) {}

 protected:
  void Execute() override {
    NetnsScope scope;
    if (!EnterNetns(&scope, netns_)) return;
    if (!resolver_.Open()) return Fail(resolver_.error());

    for (int attempt = 0; attempt < kUdpBoundAttempts; attempt++) {
      if (!resolver_.Resolve(attempt == 0 ? hint_ : -1)) return Fail(resolver_.error());
      if (!resolver_.found()) return;

      TestRunInput input;
      input.data = frame_;
      input.ctx.assign(kSkbContextSize, 0);
      int32_t netnsid = resolver_.netnsid();
      memcpy(input.ctx.data() + kSkbCb0Offset, &netnsid, sizeof(netnsid));
      input.has_ctx = true;
      TestRunOutput output;
      int err = RunTest(prog_fd_.Get(), input, &output);
      if (err < 0) return Fail(MakeSysError("bpf_prog_test_run_opts", prog_name_, err));

      // The id may have passed to another namespace meanwhile.
      bool still = true;
      if (netnsid >= 0 && !resolver_.NamespaceHasAddress(netnsid, &still)) return Fail(resolver_.error());
      if (still) {
        retval_ = output.retval;
        netnsid_ = netnsid;
        done_ = true;
        return;
      }
    }
  }

  Napi::Value Result() override {
    Napi::Env env = Env();
    Napi::Object result = Napi::Object::New(env);
    if (done_) {
      result.Set("retval", retval_);
      result.Set("netnsId", netnsid_);
    } else if (!resolver_.found()) {
      result.Set("reason", resolver_.reason());
    } else {
      result.Set("reason", "the network namespace that had " + text_ + " lost it during the check");
    }
    return result;
  }

 private:
  UniqueFd prog_fd_;
  std::string prog_name_;
  std::vector<uint8_t> frame_;
  std::string text_;
  Resolver resolver_;
  std::string netns_;
  int32_t hint_;

  bool done_ = false;
  uint32_t retval_ = 0;
  int32_t netnsid_ = -1;
};

// Parses a numeric IPv4 or IPv6 address; throws a TypeError otherwise.
Address ParseAddress(Napi::Env env, const std::string& text) {
  Address address;
  if (inet_pton(AF_INET, text.c_str(), address.bytes) == 1) {
    address.family = AF_INET;
    address.length = 4;
  } else if (inet_pton(AF_INET6, text.c_str(), address.bytes) == 1) {
    address.family = AF_INET6;
    address.length = 16;
  } else {
    ThrowTypeError(env, "invalid endpoint address " + text + ": expected a numeric IPv4 or IPv6 address", "ERR_INVALID_ARG_VALUE");
  }
  return address;
}

Napi::Value EndpointNetns(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseOrRejection(env, [&] {
    std::string text = StringArg(info, 0, "address");
    std::string netns = OptionalStringArg(info, 1, "netns");
    Address address = ParseAddress(env, text);
    return PromiseWorker::Start(new EndpointNetnsWorker(env, std::move(text), address, std::move(netns)));
  });
}

Napi::Value UdpSocketBound(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseOrRejection(env, [&] {
    BpfProgram* program = BpfProgram::FromValue(env, info[0], "program");
    Napi::Buffer<uint8_t> frame = BufferArg(info, 1, "frame");
    std::string text = StringArg(info, 2, "address");
    std::string netns = OptionalStringArg(info, 3, "netns");
    int32_t hint = -1;
    if (info.Length() > 4 && !info[4].IsUndefined()) {
      if (!info[4].IsNumber()) ThrowTypeError(env, "hintNetnsId must be a number", "ERR_INVALID_ARG_TYPE");
      hint = info[4].As<Napi::Number>().Int32Value();
    }
    Address address = ParseAddress(env, text);
    std::vector<uint8_t> bytes(frame.Data(), frame.Data() + frame.Length());
    return PromiseWorker::Start(
        new UdpBoundWorker(env, program->DupFd(env), program->ProgramName(), std::move(bytes), std::move(text), address, std::move(netns), hint));
  });
}

}  // namespace

void InitEndpointNetns(Napi::Env env, Napi::Object exports) {
  exports.Set("endpointNetns", Napi::Function::New<EndpointNetns>(env, "endpointNetns"));
  exports.Set("udpSocketBound", Napi::Function::New<UdpSocketBound>(env, "udpSocketBound"));
}

}  // namespace zerohold
