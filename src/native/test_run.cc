// SPDX-License-Identifier: Apache-2.0
#include "test_run.h"

#include <bpf/bpf.h>
#include <errno.h>

#include <algorithm>

#include "args.h"
#include "promise_worker.h"

namespace zerohold {

namespace {

// Default room for data_out beyond the input, because a program may grow
// the packet. XDP's test buffer is one page, so this is enough there.
constexpr uint32_t kDataOutGrowth = 4096;

std::vector<uint8_t> CopyBuffer(const Napi::Buffer<uint8_t>& buffer) {
  return std::vector<uint8_t>(buffer.Data(), buffer.Data() + buffer.Length());
}

uint32_t OptionalUint32Field(Napi::Env env, const Napi::Object& options,
                             const char* key, const char* name,
                             uint32_t fallback) {
  Napi::Value value = options.Get(key);
  if (value.IsUndefined()) return fallback;
  return Uint32Value(env, value, name);
}

class TestRunWorker : public PromiseWorker {
 public:
  TestRunWorker(Napi::Env env, UniqueFd prog_fd, std::string prog_name,
                TestRunInput input)
      : PromiseWorker(env, "zerohold.testRun"),
        prog_fd_(std::move(prog_fd)),
        prog_name_(std::move(prog_name)),
        input_(std::move(input)) {}

 protected:
  void Execute() override {
    int err = RunTest(prog_fd_.Get(), input_, &output_);
    if (err < 0) Fail(MakeSysError("bpf_prog_test_run_opts", prog_name_, err));
  }

  Napi::Value Result() override { return TestRunResult(Env(), output_); }

 private:
  UniqueFd prog_fd_;
  std::string prog_name_;
  TestRunInput input_;
  TestRunOutput output_;
};

}  // namespace

TestRunInput ParseTestRunOptions(Napi::Env env, Napi::Value value) {
  if (!value.IsObject()) {
    ThrowTypeError(env, "opts must be an object", "ERR_INVALID_ARG_TYPE");
  }
  Napi::Object options = value.As<Napi::Object>();
  TestRunInput input;

  Napi::Value data = options.Get("data");
  if (!data.IsBuffer()) {
    ThrowTypeError(env, "opts.data must be a Buffer", "ERR_INVALID_ARG_TYPE");
  }
  input.data = CopyBuffer(data.As<Napi::Buffer<uint8_t>>());

  Napi::Value ctx = options.Get("ctx");
  if (!ctx.IsUndefined() && !ctx.IsNull()) {
    if (!ctx.IsBuffer()) {
      ThrowTypeError(env, "opts.ctx must be a Buffer", "ERR_INVALID_ARG_TYPE");
    }
    input.ctx = CopyBuffer(ctx.As<Napi::Buffer<uint8_t>>());
    input.has_ctx = true;
  }

  input.repeat = OptionalUint32Field(env, options, "repeat", "opts.repeat", 1);
  input.flags = OptionalUint32Field(env, options, "flags", "opts.flags", 0);
  input.cpu = OptionalUint32Field(env, options, "cpu", "opts.cpu", 0);

  // The kernel rejects data_out and ctx_out for live frames, so they are
  // off by default there.
  bool live = (input.flags & BPF_F_TEST_XDP_LIVE_FRAMES) != 0;
  uint32_t data_out_default =
      live ? 0 : static_cast<uint32_t>(input.data.size()) + kDataOutGrowth;
  uint32_t ctx_out_default =
      live ? 0 : static_cast<uint32_t>(input.ctx.size());
  input.data_out_size = OptionalUint32Field(env, options, "dataOutSize",
                                            "opts.dataOutSize",
                                            data_out_default);
  input.ctx_out_size = OptionalUint32Field(env, options, "ctxOutSize",
                                           "opts.ctxOutSize", ctx_out_default);
  return input;
}

int RunTest(int prog_fd, const TestRunInput& input, TestRunOutput* output) {
  output->data.resize(input.data_out_size);
  output->ctx.resize(input.ctx_out_size);

  bpf_test_run_opts opts = {};
  opts.sz = sizeof(opts);
  opts.data_in = input.data.data();
  opts.data_size_in = static_cast<uint32_t>(input.data.size());
  if (input.data_out_size > 0) {
    opts.data_out = output->data.data();
    opts.data_size_out = input.data_out_size;
  }
  if (input.has_ctx) {
    opts.ctx_in = input.ctx.data();
    opts.ctx_size_in = static_cast<uint32_t>(input.ctx.size());
  }
  if (input.ctx_out_size > 0) {
    opts.ctx_out = output->ctx.data();
    opts.ctx_size_out = input.ctx_out_size;
  }
  opts.repeat = static_cast<int>(input.repeat);
  opts.flags = input.flags;
  opts.cpu = input.cpu;

  int err = bpf_prog_test_run_opts(prog_fd, &opts);
  if (err < 0) return err;

  output->retval = opts.retval;
  output->duration = opts.duration;
  output->has_data = input.data_out_size > 0;
  output->has_ctx = input.ctx_out_size > 0;
  output->data.resize(std::min(opts.data_size_out, input.data_out_size));
  output->ctx.resize(std::min(opts.ctx_size_out, input.ctx_out_size));
  return 0;
}

Napi::Object TestRunResult(Napi::Env env, const TestRunOutput& output) {
  Napi::Object result = Napi::Object::New(env);
  result.Set("retval", Napi::Number::New(env, output.retval));
  result.Set("duration", Napi::Number::New(env, output.duration));

  Napi::Value data = env.Null();
  if (output.has_data) {
    data = Napi::Buffer<uint8_t>::Copy(env, output.data.data(),
                                       output.data.size());
  }
  result.Set("data", data);

  Napi::Value ctx = env.Null();
  if (output.has_ctx) {
    ctx = Napi::Buffer<uint8_t>::Copy(env, output.ctx.data(),
                                      output.ctx.size());
  }
  result.Set("ctx", ctx);
  return result;
}

Napi::Promise StartTestRun(Napi::Env env, UniqueFd prog_fd,
                           std::string prog_name, TestRunInput input) {
  return PromiseWorker::Start(new TestRunWorker(
      env, std::move(prog_fd), std::move(prog_name), std::move(input)));
}

}  // namespace zerohold
