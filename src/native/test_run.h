// SPDX-License-Identifier: Apache-2.0
#ifndef ZEROHOLD_NATIVE_TEST_RUN_H
#define ZEROHOLD_NATIVE_TEST_RUN_H

#include <napi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "sys_error.h"
#include "unique_fd.h"

namespace zerohold {

// One BPF_PROG_TEST_RUN, copied out of its JS options so that it can run
// on a worker thread.
struct TestRunInput {
  std::vector<uint8_t> data;
  std::vector<uint8_t> ctx;
  bool has_ctx = false;
  uint32_t repeat = 1;
  uint32_t data_out_size = 0;  // 0: no data_out
  uint32_t ctx_out_size = 0;   // 0: no ctx_out
  uint32_t flags = 0;
  uint32_t cpu = 0;
};

struct TestRunOutput {
  uint32_t retval = 0;
  uint32_t duration = 0;  // average nanoseconds per repetition
  std::vector<uint8_t> data;
  std::vector<uint8_t> ctx;
  bool has_data = false;
  bool has_ctx = false;
};

// Reads { data, ctx?, repeat?, dataOutSize?, ctxOutSize?, flags?, cpu? }.
TestRunInput ParseTestRunOptions(Napi::Env env, Napi::Value options);

// Runs the program once per repetition; returns 0 or -errno. Safe on any
// thread.
int RunTest(int prog_fd, const TestRunInput& input, TestRunOutput* output);

// Builds { retval, duration, data, ctx }.
Napi::Object TestRunResult(Napi::Env env, const TestRunOutput& output);

// Queues RunTest() on a worker thread and returns its Promise.
Napi::Promise StartTestRun(Napi::Env env, UniqueFd prog_fd,
                           std::string prog_name, TestRunInput input);

}  // namespace zerohold

#endif  // ZEROHOLD_NATIVE_TEST_RUN_H
