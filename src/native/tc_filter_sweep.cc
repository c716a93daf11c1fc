// SPDX-License-Identifier: Apache-2.0
#include "tc_filter_sweep.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <net/if.h>

#include <set>
#include <string>
#include <vector>

#include "args.h"
#include "promise_worker.h"
#include "unique_fd.h"

namespace zerohold {

namespace {

struct DetachedFilter {
  std::string ifname;
  uint32_t ifindex;
  uint32_t prog_id;
  std::string prog_name;
};

class SweepWorker : public PromiseWorker {
 public:
  SweepWorker(Napi::Env env, std::set<std::string> program_names,
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

    struct if_nameindex* devices = if_nameindex();
    if (devices == nullptr) {
      Fail(MakeSysError("if_nameindex", netns_, errno));
      return;
    }
    for (struct if_nameindex* device = devices; device->if_index != 0; device++) {
      if (keep_.count(device->if_index) != 0) continue;
      if (!DetachIfOurs(device->if_index, device->if_name)) break;
    }
    if_freenameindex(devices);
  }

  Napi::Value Result() override {
    Napi::Env env = Env();
    Napi::Array result = Napi::Array::New(env, detached_.size());
    for (size_t i = 0; i < detached_.size(); i++) {
      Napi::Object filter = Napi::Object::New(env);
      filter.Set("ifname", detached_[i].ifname);
      filter.Set("ifindex", detached_[i].ifindex);
      filter.Set("progId", detached_[i].prog_id);
      filter.Set("progName", detached_[i].prog_name);
      result.Set(i, filter);
    }
    return result;
  }

 private:
  // Detaches the filter at the position on the ingress of ifindex if one of
  // program_names_ runs there. Returns false after a failure it reported.
  bool DetachIfOurs(uint32_t ifindex, const char* ifname) {
    bpf_tc_hook hook = {};
    hook.sz = sizeof(hook);
    hook.ifindex = static_cast<int>(ifindex);
    hook.attach_point = BPF_TC_INGRESS;

    bpf_tc_opts query = {};
    query.sz = sizeof(query);
    query.handle = handle_;
    query.priority = priority_;
    int err = bpf_tc_query(&hook, &query);
    // ENOENT: no filter there. EINVAL: the device has no clsact qdisc.
    if (err == -ENOENT || err == -EINVAL) return true;
    if (err < 0) {
      Fail(MakeSysError("bpf_tc_query", std::string(ifname) + " ingress", err));
      return false;
    }

    std::string prog_name = ProgramName(query.prog_id);
    if (program_names_.count(prog_name) == 0) return true;

    bpf_tc_opts detach = {};
    detach.sz = sizeof(detach);
    detach.handle = handle_;
    detach.priority = priority_;
    err = bpf_tc_detach(&hook, &detach);
    if (err == -ENOENT) return true;
    if (err < 0) {
      Fail(MakeSysError("bpf_tc_detach", std::string(ifname) + " ingress, clsact", err));
      return false;
    }
    detached_.push_back({ifname, ifindex, query.prog_id, prog_name});
    return true;
  }

  // Returns the name of program id, or "" if it is gone or unreadable, so
  // that an unknown program is left alone.
  static std::string ProgramName(uint32_t id) {
    UniqueFd fd(bpf_prog_get_fd_by_id(id));
    if (!fd.Valid()) return "";

    bpf_prog_info info = {};
    uint32_t length = sizeof(info);
    if (bpf_obj_get_info_by_fd(fd.Get(), &info, &length) < 0) return "";
    return info.name;
  }

  std::set<std::string> program_names_;
  std::set<uint32_t> keep_;
  uint32_t handle_;
  uint32_t priority_;
  std::string netns_;
  std::vector<DetachedFilter> detached_;
};

Napi::Value DetachClsactFilters(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseOrRejection(env, [&] {
    if (!info[0].IsArray() || !info[1].IsArray()) {
      ThrowTypeError(env, "programNames and keepIfindexes must be arrays",
                     "ERR_INVALID_ARG_TYPE");
    }
    std::set<std::string> names;
    Napi::Array name_values = info[0].As<Napi::Array>();
    for (uint32_t i = 0; i < name_values.Length(); i++) {
      Napi::Value name = name_values.Get(i);
      if (!name.IsString()) {
        ThrowTypeError(env, "programNames must contain strings",
                       "ERR_INVALID_ARG_TYPE");
      }
      names.insert(name.As<Napi::String>().Utf8Value());
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
