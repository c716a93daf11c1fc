// SPDX-License-Identifier: Apache-2.0
#ifndef ZEROHOLD_NATIVE_OBJECT_LOAD_H
#define ZEROHOLD_NATIVE_OBJECT_LOAD_H

#include <napi.h>

#include <memory>

#include "object_handle.h"

namespace zerohold {

// Loads the object with bpf_object__load() on a worker thread. The handle
// is marked loading until the Promise settles. A rejection carries two more
// properties: verifierLog, the failing program's verifier output, and
// libbpfLog, libbpf's warnings. Its message ends with both, the verifier
// log cut to its last lines.
Napi::Promise StartObjectLoad(Napi::Env env,
                              std::shared_ptr<ObjectHandle> handle);

}  // namespace zerohold

#endif  // ZEROHOLD_NATIVE_OBJECT_LOAD_H
