// SPDX-License-Identifier: Apache-2.0
#ifndef ZEROHOLD_NATIVE_ADDON_DATA_H
#define ZEROHOLD_NATIVE_ADDON_DATA_H

#include <napi.h>

namespace zerohold {

// Per-environment state: the constructors of the handle classes that only
// native code creates. Methods and PromiseWorker::Result() use them to wrap
// new handles, and argument checks use them with InstanceOf.
struct AddonData {
  Napi::FunctionReference bpf_map;
  Napi::FunctionReference bpf_program;
  Napi::FunctionReference bpf_link;
  Napi::FunctionReference tc_attachment;
};

inline AddonData& GetAddonData(Napi::Env env) {
  return *env.GetInstanceData<AddonData>();
}

}  // namespace zerohold

#endif  // ZEROHOLD_NATIVE_ADDON_DATA_H
