// SPDX-License-Identifier: Apache-2.0
// Entry point of zerohold.node: registers the handle classes, the free
// functions and the constants that TypeScript needs.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <linux/if_link.h>
#include <napi.h>

#include "addon_data.h"
#include "bpf_link.h"
#include "bpf_map.h"
#include "bpf_object.h"
#include "bpf_program.h"
#include "endpoint_netns.h"
#include "netns_socket.h"
#include "if_index.h"
#include "interfaces.h"
#include "libbpf_log.h"
#include "ring_buffer.h"
#include "sys_error.h"
#include "tc_attachment.h"
#include "tc_filter_sweep.h"
#include "xdp.h"

namespace zerohold {

namespace {

Napi::Value NumPossibleCpus(const Napi::CallbackInfo& info) {
  int cpus = libbpf_num_possible_cpus();
  if (cpus < 0) ThrowSysError(info.Env(), "libbpf_num_possible_cpus", "", cpus);
  return Napi::Number::New(info.Env(), cpus);
}

Napi::Object MakeConstants(Napi::Env env) {
  Napi::Object constants = Napi::Object::New(env);
  auto set = [&](const char* name, double value) {
    constants.Set(name, Napi::Number::New(env, value));
  };

  set("BPF_MAP_TYPE_HASH", BPF_MAP_TYPE_HASH);
  set("BPF_MAP_TYPE_ARRAY", BPF_MAP_TYPE_ARRAY);
  set("BPF_MAP_TYPE_PROG_ARRAY", BPF_MAP_TYPE_PROG_ARRAY);
  set("BPF_MAP_TYPE_PERCPU_HASH", BPF_MAP_TYPE_PERCPU_HASH);
  set("BPF_MAP_TYPE_PERCPU_ARRAY", BPF_MAP_TYPE_PERCPU_ARRAY);
  set("BPF_MAP_TYPE_LRU_HASH", BPF_MAP_TYPE_LRU_HASH);
  set("BPF_MAP_TYPE_LRU_PERCPU_HASH", BPF_MAP_TYPE_LRU_PERCPU_HASH);
  set("BPF_MAP_TYPE_RINGBUF", BPF_MAP_TYPE_RINGBUF);

  set("BPF_PROG_TYPE_SCHED_CLS", BPF_PROG_TYPE_SCHED_CLS);
  set("BPF_PROG_TYPE_XDP", BPF_PROG_TYPE_XDP);

  set("BPF_XDP", BPF_XDP);
  set("BPF_TCX_INGRESS", 46);  // Linux 6.6; newer than the uapi headers
  set("BPF_TCX_EGRESS", 47);

  set("BPF_LINK_TYPE_XDP", BPF_LINK_TYPE_XDP);
  set("BPF_LINK_TYPE_TCX", 11);  // Linux 6.6, like BPF_TCX_INGRESS

  set("BPF_ANY", BPF_ANY);
  set("BPF_NOEXIST", BPF_NOEXIST);
  set("BPF_EXIST", BPF_EXIST);

  set("BPF_F_TEST_RUN_ON_CPU", BPF_F_TEST_RUN_ON_CPU);
  set("BPF_F_TEST_XDP_LIVE_FRAMES", BPF_F_TEST_XDP_LIVE_FRAMES);

  set("XDP_ABORTED", XDP_ABORTED);
  set("XDP_DROP", XDP_DROP);
  set("XDP_PASS", XDP_PASS);
  set("XDP_TX", XDP_TX);
  set("XDP_REDIRECT", XDP_REDIRECT);

  set("RINGBUF_BATCH_MAX_BYTES", kRingBatchMaxBytes);
  set("RINGBUF_BATCH_MAX_RECORDS", kRingBatchMaxRecords);
  return constants;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InstallLibbpfPrint();
  env.SetInstanceData(new AddonData());

  BpfObject::Init(env, exports);
  BpfMap::Init(env, exports);
  BpfProgram::Init(env);
  BpfLink::Init(env, exports);
  TcAttachment::Init(env, exports);
  InitTcFilterSweep(env, exports);
  RingBuffer::Init(env, exports);
  InitXdp(env, exports);
  InitIfIndex(env, exports);
  InitInterfaces(env, exports);
  InitNetnsSocket(env, exports);
  InitEndpointNetns(env, exports);

  exports.Set("numPossibleCpus",
              Napi::Function::New<NumPossibleCpus>(env, "numPossibleCpus"));
  exports.Set("constants", MakeConstants(env));
  return exports;
}

}  // namespace

}  // namespace zerohold

// NODE_API_MODULE pastes the name into an identifier, so it cannot be
// qualified.
static Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  return zerohold::Init(env, exports);
}

NODE_API_MODULE(zerohold, InitModule)
