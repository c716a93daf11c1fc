// SPDX-License-Identifier: Apache-2.0
#include "live_frames.h"

#include <bpf/bpf.h>
#include <linux/bpf.h>

#include <algorithm>
#include <cstdint>
#include <system_error>
#include <thread>
#include <vector>

#include "args.h"
#include "netns.h"
#include "promise_worker.h"
#include "sys_error.h"

namespace zerohold {

namespace {

// Linux 6.18 accepts at most 32 bytes of metadata in front of an XDP
// frame, in 4-byte units.
constexpr size_t kMaxMetaSize = 32;

// Each test run also carries its frame through the receive path before it
// returns: netfilter, NAT, and the backend's reply when the backend is on
// this node. That is 15 to 100 us per frame on a KVM guest, so a release of
// thousands of flows is CPU-bound, and a batch spreads over up to one
// thread per CPU. Below kMinFramesPerThread frames a thread costs more
// than it saves.
constexpr uint32_t kMaxThreads = 8;
constexpr uint32_t kMinFramesPerThread = 32;

// The limit on the frames of one RunLiveFramesNow call: at up to 100 us a
// frame, it blocks the JS thread for at most about 1.6 ms.
constexpr size_t kMaxFramesNow = 16;

struct LiveFrame {
  std::vector<uint8_t> data;  // metadata followed by the frame
  uint32_t meta_size = 0;
  uint32_t ifindex = 0;
  uint32_t rx_queue = 0;
};

struct FrameError {
  uint32_t index;
  SysError error;
};

Napi::Buffer<uint8_t> BufferField(Napi::Env env, const Napi::Object& object,
                                  const char* key, const std::string& name,
                                  bool optional) {
  Napi::Value value = object.Get(key);
  if (optional && (value.IsUndefined() || value.IsNull())) {
    return Napi::Buffer<uint8_t>::New(env, 0);
  }
  if (!value.IsBuffer()) {
    ThrowTypeError(env, name + " must be a Buffer", "ERR_INVALID_ARG_TYPE");
  }
  return value.As<Napi::Buffer<uint8_t>>();
}

LiveFrame ParseFrame(Napi::Env env, Napi::Value value, uint32_t index) {
  std::string name = "frames[" + std::to_string(index) + "]";
  if (!value.IsObject()) {
    ThrowTypeError(env, name + " must be an object", "ERR_INVALID_ARG_TYPE");
  }
  Napi::Object object = value.As<Napi::Object>();

  Napi::Buffer<uint8_t> frame =
      BufferField(env, object, "frame", name + ".frame", false);
  Napi::Buffer<uint8_t> meta =
      BufferField(env, object, "meta", name + ".meta", true);
  if (meta.Length() > kMaxMetaSize || meta.Length() % 4 != 0) {
    ThrowTypeError(env,
                   name + ".meta is " + std::to_string(meta.Length()) +
                       " bytes, expected a multiple of 4 up to 32",
                   "ERR_INVALID_ARG_VALUE");
  }

  LiveFrame parsed;
  parsed.meta_size = static_cast<uint32_t>(meta.Length());
  parsed.data.reserve(meta.Length() + frame.Length());
  parsed.data.insert(parsed.data.end(), meta.Data(),
                     meta.Data() + meta.Length());
  parsed.data.insert(parsed.data.end(), frame.Data(),
                     frame.Data() + frame.Length());

  parsed.ifindex = Uint32Value(env, object.Get("ifindex"),
                               (name + ".ifindex").c_str());
  Napi::Value rx_queue = object.Get("rxQueue");
  if (!rx_queue.IsUndefined()) {
    parsed.rx_queue = Uint32Value(env, rx_queue, (name + ".rxQueue").c_str());
  }
  return parsed;
}

// Runs the program once on one frame, which it sends into the stack.
// Returns 0 or a negative errno.
int RunLiveFrame(int prog_fd, const LiveFrame& frame) {
  // data_meta must be 0: the metadata starts the buffer, and data is
  // where the frame begins after it.
  xdp_md ctx = {};
  ctx.data = frame.meta_size;
  ctx.data_end = static_cast<uint32_t>(frame.data.size());
  ctx.ingress_ifindex = frame.ifindex;
  ctx.rx_queue_index = frame.rx_queue;

  bpf_test_run_opts opts = {};
  opts.sz = sizeof(opts);
  opts.data_in = frame.data.data();
  opts.data_size_in = static_cast<uint32_t>(frame.data.size());
  opts.ctx_in = &ctx;
  opts.ctx_size_in = sizeof(ctx);
  opts.repeat = 1;
  opts.flags = BPF_F_TEST_XDP_LIVE_FRAMES;
  return bpf_prog_test_run_opts(prog_fd, &opts);
}

// Names the frame in the error of its re-injection, with a hint for the
// errors that a frame's own fields cause.
SysError FrameSysError(const std::string& prog_name, const LiveFrame& frame,
                       int err) {
  std::string subject = prog_name + ", ifindex " +
                        std::to_string(frame.ifindex) + ", rx queue " +
                        std::to_string(frame.rx_queue) + ", " +
                        std::to_string(frame.data.size() - frame.meta_size) +
                        " bytes";
  SysError error = MakeSysError("bpf_prog_test_run_opts", subject, err);
  if (error.err == ENODEV) {
    error.detail =
        "no device has this ifindex in the datapath's network namespace; "
        "it was deleted after the frame was held";
  } else if (error.err == EINVAL) {
    error.detail =
        "the rx queue must be below the device's number of rx queues, and "
        "the frame at most 3408 bytes";
  }
  return error;
}

// Sends frames first, first + step, ... and records each failure with
// its frame index.
void SendStride(int prog_fd, const std::string& prog_name,
                const std::vector<LiveFrame>& frames, uint32_t first,
                uint32_t step, std::vector<FrameError>* errors,
                uint32_t* sent) {
  for (uint32_t i = first; i < frames.size(); i += step) {
    int err = RunLiveFrame(prog_fd, frames[i]);
    if (err < 0) {
      errors->push_back({i, FrameSysError(prog_name, frames[i], err)});
    } else {
      (*sent)++;
    }
  }
}

// { sent, errors }, errors sorted by frame index.
Napi::Object LiveResult(Napi::Env env, uint32_t sent,
                        const std::vector<FrameError>& errors) {
  Napi::Array list = Napi::Array::New(env, errors.size());
  for (uint32_t i = 0; i < errors.size(); i++) {
    const SysError& error = errors[i].error;
    Napi::Object entry = Napi::Object::New(env);
    entry.Set("index", Napi::Number::New(env, errors[i].index));
    entry.Set("code", ErrnoName(error.err));
    entry.Set("errno", Napi::Number::New(env, error.err));
    entry.Set("message", error.Message());
    list.Set(i, entry);
  }

  Napi::Object result = Napi::Object::New(env);
  result.Set("sent", Napi::Number::New(env, sent));
  result.Set("errors", list);
  return result;
}

std::vector<LiveFrame> ParseFrames(Napi::Env env, Napi::Value frames) {
  if (!frames.IsArray()) {
    ThrowTypeError(env, "frames must be an array", "ERR_INVALID_ARG_TYPE");
  }
  Napi::Array array = frames.As<Napi::Array>();

  std::vector<LiveFrame> parsed;
  parsed.reserve(array.Length());
  for (uint32_t i = 0; i < array.Length(); i++) {
    parsed.push_back(ParseFrame(env, array.Get(i), i));
  }
  return parsed;
}

class LiveFramesWorker : public PromiseWorker {
 public:
  LiveFramesWorker(Napi::Env env, UniqueFd prog_fd, std::string prog_name,
                   std::vector<LiveFrame> frames, std::string netns)
      : PromiseWorker(env, "zerohold.runLive"),
        prog_fd_(std::move(prog_fd)),
        prog_name_(std::move(prog_name)),
        frames_(std::move(frames)),
        netns_(std::move(netns)) {}

 protected:
  void Execute() override {
    // The kernel looks the ingress device up in the calling thread's
    // namespace, so every thread runs inside the device's namespace. A
    // failure to enter it on this thread fails the whole batch.
    NetnsScope scope;
    if (!EnterNetns(&scope, netns_)) return;

    const uint32_t count = static_cast<uint32_t>(frames_.size());
    const uint32_t cpus = std::max(1u, std::thread::hardware_concurrency());
    const uint32_t threads = std::clamp(
        std::min(cpus, (count + kMinFramesPerThread - 1) / kMinFramesPerThread),
        1u, kMaxThreads);
    std::vector<std::vector<FrameError>> errors(threads);
    std::vector<uint32_t> sent(threads, 0);

    // Thread t sends frames t, t + threads, ...: every thread starts with
    // the oldest frames, so the batch keeps roughly the arrival order.
    std::vector<std::thread> workers;
    std::vector<uint32_t> unstarted;
    for (uint32_t t = 1; t < threads; t++) {
      try {
        workers.emplace_back([this, t, threads, &errors, &sent] {
          NetnsScope worker_scope;
          SysError error;
          if (!worker_scope.Enter(netns_, &error)) {
            for (uint32_t i = t; i < frames_.size(); i += threads) {
              errors[t].push_back({i, error});
            }
            return;
          }
          RunStride(t, threads, &errors[t], &sent[t]);
        });
      } catch (const std::system_error&) {
        // No thread available: this thread sends that share too.
        unstarted.push_back(t);
      }
    }
    RunStride(0, threads, &errors[0], &sent[0]);
    for (uint32_t t : unstarted) RunStride(t, threads, &errors[t], &sent[t]);
    for (std::thread& worker : workers) worker.join();

    for (uint32_t t = 0; t < threads; t++) {
      sent_ += sent[t];
      errors_.insert(errors_.end(), errors[t].begin(), errors[t].end());
    }
    std::sort(errors_.begin(), errors_.end(),
              [](const FrameError& a, const FrameError& b) {
                return a.index < b.index;
              });
  }

  Napi::Value Result() override { return LiveResult(Env(), sent_, errors_); }

 private:
  void RunStride(uint32_t first, uint32_t step,
                 std::vector<FrameError>* errors, uint32_t* sent) {
    SendStride(prog_fd_.Get(), prog_name_, frames_, first, step, errors, sent);
  }

  UniqueFd prog_fd_;
  std::string prog_name_;
  std::vector<LiveFrame> frames_;
  std::string netns_;
  uint32_t sent_ = 0;
  std::vector<FrameError> errors_;
};

}  // namespace

Napi::Promise StartLiveFrames(Napi::Env env, UniqueFd prog_fd,
                              std::string prog_name, Napi::Value frames,
                              std::string netns) {
  std::vector<LiveFrame> parsed = ParseFrames(env, frames);
  return PromiseWorker::Start(
      new LiveFramesWorker(env, std::move(prog_fd), std::move(prog_name),
                           std::move(parsed), std::move(netns)));
}

Napi::Object RunLiveFramesNow(Napi::Env env, int prog_fd,
                              const std::string& prog_name, Napi::Value frames,
                              const std::string& netns) {
  std::vector<LiveFrame> parsed = ParseFrames(env, frames);
  if (parsed.size() > kMaxFramesNow) {
    Napi::RangeError error = Napi::RangeError::New(
        env, std::to_string(parsed.size()) +
                 " frames are too many to send on the JS thread, at most " +
                 std::to_string(kMaxFramesNow) + "; use runLive");
    error.Set("code", "ERR_OUT_OF_RANGE");
    throw error;
  }

  // The scope moves the JS thread back before this returns, and no other
  // JS runs meanwhile, so no other code runs in the other namespace.
  NetnsScope scope;
  SysError error;
  if (!scope.Enter(netns, &error)) throw ToJsError(env, error);

  uint32_t sent = 0;
  std::vector<FrameError> errors;
  SendStride(prog_fd, prog_name, parsed, 0, 1, &errors, &sent);
  return LiveResult(env, sent, errors);
}

}  // namespace zerohold
