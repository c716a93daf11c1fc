// SPDX-License-Identifier: Apache-2.0
#ifndef ZEROHOLD_NATIVE_LIVE_FRAMES_H
#define ZEROHOLD_NATIVE_LIVE_FRAMES_H

#include <napi.h>

#include <string>

#include "unique_fd.h"

namespace zerohold {

// Re-injects frames into the network stack by running an XDP program on
// each with BPF_F_TEST_XDP_LIVE_FRAMES, all in one worker thread that
// enters netns (if given) once. frames is the JS array of
// { frame, meta?, ifindex, rxQueue? }; it is validated and copied before
// this returns. The Promise resolves with { sent, errors }: a frame the
// kernel rejects lands in errors, and only a namespace failure rejects.
Napi::Promise StartLiveFrames(Napi::Env env, UniqueFd prog_fd,
                              std::string prog_name, Napi::Value frames,
                              std::string netns);

// The same for a few frames, on the calling JS thread, which returns the
// result object. A release of one or a few flows then goes out at once,
// instead of waiting for a pool thread to be scheduled and for the JS
// thread to take the result back, which on a busy machine takes
// milliseconds. Throws a RangeError for more than 16 frames and an Error
// when the namespace cannot be entered.
Napi::Object RunLiveFramesNow(Napi::Env env, int prog_fd,
                              const std::string& prog_name, Napi::Value frames,
                              const std::string& netns);

}  // namespace zerohold

#endif  // ZEROHOLD_NATIVE_LIVE_FRAMES_H
