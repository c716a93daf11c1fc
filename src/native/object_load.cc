// SPDX-License-Identifier: Apache-2.0
#include "object_load.h"

#include <bpf/libbpf.h>

#include <string>

#include "libbpf_log.h"
#include "promise_worker.h"
#include "sys_error.h"

namespace zerohold {

namespace {

// One buffer serves every program: libbpf stops at the first program that
// fails and retries only that one with the log on, so the buffer ends up
// with that program's log. A log that does not fit turns the error into
// ENOSPC, but the kernel keeps its tail, which names the cause (seen on
// Linux 6.18).
constexpr size_t kVerifierLogSize = 4 << 20;

// Lines of the verifier log that go into the error message; the whole log
// is in the verifierLog property.
constexpr size_t kVerifierLogTailLines = 40;

// Returns the last count lines of text, without trailing newlines.
std::string LastLines(const std::string& text, size_t count) {
  size_t end = text.find_last_not_of('\n');
  if (end == std::string::npos) return "";

  size_t start = end;
  size_t lines = 0;
  while (start > 0) {
    if (text[start - 1] == '\n' && ++lines == count) break;
    start--;
  }
  return text.substr(start, end + 1 - start);
}

class LoadWorker : public PromiseWorker {
 public:
  LoadWorker(Napi::Env env, std::shared_ptr<ObjectHandle> handle)
      : PromiseWorker(env, "zerohold.load"),
        handle_(std::move(handle)),
        log_(new char[kVerifierLogSize]) {
    log_[0] = '\0';

    bpf_program* program;
    bpf_object__for_each_program(program, handle_->Get()) {
      bpf_program__set_log_buf(program, log_.get(), kVerifierLogSize);
    }
    handle_->loading = true;
  }

 protected:
  void Execute() override {
    LibbpfLogCapture capture;
    int err = bpf_object__load(handle_->Get());
    if (err == 0) return;

    verifier_log_ = log_.get();
    libbpf_log_ = capture.Text();

    SysError error =
        MakeSysError("bpf_object__load", handle_->FileName(), err);
    error.detail = libbpf_log_;
    if (!verifier_log_.empty()) {
      error.detail += "verifier log, last lines:\n" +
                      LastLines(verifier_log_, kVerifierLogTailLines);
    }
    Fail(std::move(error));
  }

  void Finish() override {
    handle_->loading = false;
    handle_->loaded = true;
    log_.reset();
  }

  Napi::Error MakeError(const SysError& error) override {
    Napi::Error js = ToJsError(Env(), error);
    js.Set("verifierLog", verifier_log_);
    js.Set("libbpfLog", libbpf_log_);
    return js;
  }

 private:
  std::shared_ptr<ObjectHandle> handle_;
  std::unique_ptr<char[]> log_;  // libbpf writes here until the load ends
  std::string verifier_log_;
  std::string libbpf_log_;
};

}  // namespace

Napi::Promise StartObjectLoad(Napi::Env env,
                              std::shared_ptr<ObjectHandle> handle) {
  return PromiseWorker::Start(new LoadWorker(env, std::move(handle)));
}

}  // namespace zerohold
