// SPDX-License-Identifier: Apache-2.0
#ifndef ZEROHOLD_NATIVE_TC_FILTER_SWEEP_H
#define ZEROHOLD_NATIVE_TC_FILTER_SWEEP_H

#include <napi.h>

namespace zerohold {

// Registers detachClsactFilters(programNames, keepIfindexes, filter,
// netns?), which removes the clsact ingress filters that an earlier
// process left at one handle and priority. Unlike a tcx link, such a
// filter has no pin to find it by, so every device of the namespace is
// queried.
void InitTcFilterSweep(Napi::Env env, Napi::Object exports);

}  // namespace zerohold

#endif  // ZEROHOLD_NATIVE_TC_FILTER_SWEEP_H
