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
#include "netns.h"
#include "promise_worker.h"
#include "rtnetlink.h"
#include "sys_error.h"

namespace zerohold {

namespace {

// Bounds one wait for a reply, which rtnetlink sends at once.
constexpr time_t kReplyTimeoutSeconds = 5;

struct Link {
  uint32_t ifindex = 0;
  uint32_t master = 0;  // IFLA_MASTER, 0 for none
  std::string name;
  std::string kind;  // IFLA_INFO_KIND: "veth", "bridge" ...
  bool has_link_netnsid = false;
  int32_t link_netnsid = 0;  // the peer's namespace, for a veth
};

struct Address {
  int family = 0;
  unsigned char bytes[16] = {};
  size_t length = 0;

  bool Equals(const void* other, size_t other_length) const {
    return other_length == length && memcmp(bytes, other, length) == 0;
  }
};

bool ParseLink(const nlmsghdr* message, Link* link) {
  if (message->nlmsg_type != RTM_NEWLINK || message->nlmsg_len < NLMSG_LENGTH(sizeof(ifinfomsg))) return false;
  auto* info = static_cast<const ifinfomsg*>(NLMSG_DATA(message));
  const void* attributes = IFLA_RTA(info);
  size_t length = IFLA_PAYLOAD(message);

  link->ifindex = static_cast<uint32_t>(info->ifi_index);
  if (const rtattr* name = FindAttribute(attributes, length, IFLA_IFNAME)) {
    link->name.assign(static_cast<const char*>(RTA_DATA(name)), strnlen(static_cast<const char*>(RTA_DATA(name)), RTA_PAYLOAD(name)));
  }
  if (const rtattr* master = FindAttribute(attributes, length, IFLA_MASTER); master && RTA_PAYLOAD(master) >= sizeof(uint32_t)) {
    memcpy(&link->master, RTA_DATA(master), sizeof(uint32_t));
  }
  if (const rtattr* netnsid = FindAttribute(attributes, length, IFLA_LINK_NETNSID); netnsid && RTA_PAYLOAD(netnsid) >= sizeof(int32_t)) {
    memcpy(&link->link_netnsid, RTA_DATA(netnsid), sizeof(int32_t));
    link->has_link_netnsid = link->link_netnsid >= 0;
  }
  if (const rtattr* info_attr = FindAttribute(attributes, length, IFLA_LINKINFO)) {
    if (const rtattr* kind = FindAttribute(RTA_DATA(info_attr), RTA_PAYLOAD(info_attr), IFLA_INFO_KIND)) {
      link->kind.assign(static_cast<const char*>(RTA_DATA(kind)), strnlen(static_cast<const char*>(RTA_DATA(kind)), RTA_PAYLOAD(kind)));
    }
  }
  return true;
}

class EndpointNetnsWorker : public PromiseWorker {
 public:
  EndpointNetnsWorker(Napi::Env env, std::string text, Address address, std::string netns)
      : PromiseWorker(env, "zerohold.endpointNetns"), text_(std::move(text)), address_(address), netns_(std::move(netns)) {}

 protected:
  void Execute() override {
    NetnsScope scope;
    if (!EnterNetns(&scope, netns_)) return;

    SysError error;
    socket_ = OpenRequestSocket(kReplyTimeoutSeconds, &error);
    if (!socket_.Valid()) return Fail(std::move(error));
    // Address dumps of another namespace (IFA_TARGET_NETNSID) need the
    // strict checking of requests.
    int one = 1;
    if (setsockopt(socket_.Get(), SOL_NETLINK, NETLINK_GET_STRICT_CHK, &one, sizeof(one)) != 0) {
      return Fail(MakeSysError("setsockopt", "NETLINK_GET_STRICT_CHK", errno));
    }

    uint32_t oif = 0;
    bool gateway = false;
    if (!RouteDevice(&oif, &gateway)) return;
    if (found_ || !reason_.empty()) return;

    // The pods' ends of the veths, most likely first: the veth that the
    // route takes (routed CNI plugins) or the ports of the bridge that it
    // takes (bridged ones). Then every other pod's, because some plugins
    // route all pods through one device of the host: Cilium sends them
    // through cilium_host, by way of a gateway address of its own.
    auto is_pod_veth = [](const Link& link) { return link.kind == "veth" && link.has_link_netnsid; };
    Link out;
    bool have_out = false;
    if (!GetLink(oif, &out, &have_out)) return;
    std::string out_name = have_out ? out.name : "interface " + std::to_string(oif);
    if (have_out && !gateway && is_pod_veth(out) && (!Check(out) || found_)) return;

    // Interfaces without their statistics, which would make each message
    // several times longer. A dump that an interface change interrupted
    // may miss a pod, and then the check cannot tell, as for an endpoint
    // on another node.
    ifinfomsg info = {};
    info.ifi_family = AF_UNSPEC;
    RtnetlinkRequest dump(RTM_GETLINK, NLM_F_DUMP, NextSeq(), &info, sizeof(info));
    uint32_t mask = RTEXT_FILTER_SKIP_STATS;
    dump.AddAttribute(IFLA_EXT_MASK, &mask, sizeof(mask));
    std::vector<Link> links;
    int err = RtnetlinkTransact(socket_.Get(), &dump, [&](const nlmsghdr* message) {
      Link link;
      if (ParseLink(message, &link)) links.push_back(std::move(link));
    });
    if (err < 0) return Fail(MakeSysError("RTM_GETLINK", "dump", err));

    if (have_out && !gateway && out.kind == "bridge") {
      for (const Link& link : links) {
        if (link.master == out.ifindex && is_pod_veth(link) && (!Check(link) || found_)) return;
      }
    }
    for (const Link& link : links) {
      if (is_pod_veth(link) && (!Check(link) || found_)) return;
    }
    reason_ = "no pod's network namespace on this node has the address " + text_ + " (the route to it leaves through " + out_name +
              (gateway ? " by way of a gateway)" : ")");
  }

  Napi::Value Result() override {
    Napi::Env env = Env();
    Napi::Object result = Napi::Object::New(env);
    if (found_) {
      result.Set("netnsId", netnsid_);
      result.Set("device", device_);
    } else {
      result.Set("reason", reason_);
    }
    return result;
  }

 private:
  // Looks the address up in the routing tables. Sets found_ for a local
  // address and reason_ for one without a unicast route; otherwise fills
  // oif and whether the route goes by way of a gateway. Returns false
  // after Fail().
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
    if (err == -ENETUNREACH || err == -EHOSTUNREACH) {
      reason_ = "this node has no route to " + text_;
      return true;
    }
    if (err < 0) {
      Fail(MakeSysError("RTM_GETROUTE", text_, err));
      return false;
    }

    if (type == RTN_LOCAL) {
      found_ = true;
      netnsid_ = -1;
      device_ = "lo";
    } else if (type != RTN_UNICAST || *oif == 0) {
      reason_ = "the route to " + text_ + " is not a unicast route through an interface";
    }
    return true;
  }

  // Reads one interface. Leaves found false for an interface that went
  // away since the route lookup. Returns false after Fail().
  bool GetLink(uint32_t ifindex, Link* link, bool* found) {
    ifinfomsg info = {};
    info.ifi_family = AF_UNSPEC;
    info.ifi_index = static_cast<int>(ifindex);
    RtnetlinkRequest request(RTM_GETLINK, 0, NextSeq(), &info, sizeof(info));
    uint32_t mask = RTEXT_FILTER_SKIP_STATS;
    request.AddAttribute(IFLA_EXT_MASK, &mask, sizeof(mask));

    int err = RtnetlinkTransact(socket_.Get(), &request, [&](const nlmsghdr* message) { *found = ParseLink(message, link); });
    if (err == -ENODEV) return true;
    if (err < 0) {
      Fail(MakeSysError("RTM_GETLINK", "interface " + std::to_string(ifindex), err));
      return false;
    }
    return true;
  }

  // Looks for the address in the namespace at the peer of a pod's veth,
  // unless an earlier call looked there, and sets found_ and what goes
  // with it when it is there. Returns false after Fail().
  bool Check(const Link& veth) {
    // Several veths can lead into one namespace.
    if (std::find(checked_.begin(), checked_.end(), veth.link_netnsid) != checked_.end()) return true;
    checked_.push_back(veth.link_netnsid);

    bool has = false;
    if (!NamespaceHasAddress(veth.link_netnsid, &has)) return false;
    if (has) {
      found_ = true;
      netnsid_ = veth.link_netnsid;
      device_ = veth.name;
    }
    return true;
  }

  // Sets has when the namespace with the given id has the address on one
  // of its interfaces. Returns false after Fail().
  bool NamespaceHasAddress(int32_t netnsid, bool* has) {
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
    // The namespace went away with its pod since the link dump.
    if (err == -EINVAL || err == -ENOENT) return true;
    if (err < 0) {
      Fail(MakeSysError("RTM_GETADDR", "namespace id " + std::to_string(netnsid), err));
      return false;
    }
    return true;
  }

  uint32_t NextSeq() { return ++seq_; }

  std::string text_;
  Address address_;
  std::string netns_;
  UniqueFd socket_;
  uint32_t seq_ = 0;
  std::vector<int32_t> checked_;  // namespace ids looked in

  bool found_ = false;
  int32_t netnsid_ = -1;
  std::string device_;
  std::string reason_;
};

Napi::Value EndpointNetns(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseOrRejection(env, [&] {
    std::string text = StringArg(info, 0, "address");
    std::string netns = OptionalStringArg(info, 1, "netns");

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
    return PromiseWorker::Start(new EndpointNetnsWorker(env, std::move(text), address, std::move(netns)));
  });
}

}  // namespace

void InitEndpointNetns(Napi::Env env, Napi::Object exports) {
  exports.Set("endpointNetns", Napi::Function::New<EndpointNetns>(env, "endpointNetns"));
}

}  // namespace zerohold
