// SPDX-License-Identifier: Apache-2.0
#ifndef ZEROHOLD_NATIVE_RING_BUFFER_H
#define ZEROHOLD_NATIVE_RING_BUFFER_H

#include <bpf/libbpf.h>
#include <napi.h>
#include <uv.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "unique_fd.h"

namespace zerohold {

// Bounds of one batch. Records left over wait for the next loop iteration,
// so a busy ring cannot starve timers and other I/O. A batch stops after
// the record that reaches either bound.
constexpr size_t kRingBatchMaxBytes = 4 << 20;
constexpr size_t kRingBatchMaxRecords = 65536;

// Reads BPF ring buffer maps on the JS thread. A uv_poll_t watches one
// epoll descriptor for all rings; each wakeup drains the rings into one
// batch and calls onBatch once with it. A batch is a Buffer of records,
// each a u32 ring index (position in the constructor's array), a u32
// length, then length bytes padded to a multiple of 8, in host byte order.
class RingBuffer : public Napi::ObjectWrap<RingBuffer> {
 public:
  static void Init(Napi::Env env, Napi::Object exports);

  explicit RingBuffer(const Napi::CallbackInfo& info);
  ~RingBuffer() override;

 private:
  // One map: libbpf 1.1 can only drain every ring of a ring_buffer in a
  // fixed order, so each map gets its own, which lets a capped batch start
  // with the next ring on the following wakeup.
  struct Ring {
    Ring(RingBuffer* owner, uint32_t index) : owner(owner), index(index) {}
    ~Ring() { ring_buffer__free(reader); }
    Ring(const Ring&) = delete;
    Ring& operator=(const Ring&) = delete;

    RingBuffer* owner;
    uint32_t index;
    UniqueFd map_fd;  // a duplicate, so closing the JS map cannot stop us
    ring_buffer* reader = nullptr;
  };

  static int OnSample(void* context, void* data, size_t size);
  static void OnReadable(uv_poll_t* handle, int status, int events);

  void Start(const Napi::CallbackInfo& info);
  void Stop(const Napi::CallbackInfo& info);
  Napi::Value Consume(const Napi::CallbackInfo& info);
  void Close(const Napi::CallbackInfo& info);

  // Drains up to one batch into batch_; returns the record count.
  size_t Drain(Napi::Env env);

  // Calls onBatch with the records in batch_. from_loop: called from the
  // event loop rather than from JS, so microtasks must run afterwards.
  void Deliver(Napi::Env env, bool from_loop);

  // Throws once close() has run.
  void RequireOpen(Napi::Env env) const;

  void StopPolling();

  // Frees the poll handle and the rings; safe to call twice.
  void Release();

  std::vector<std::unique_ptr<Ring>> rings_;
  UniqueFd epoll_fd_;
  uv_poll_t* poll_ = nullptr;  // freed by its close callback
  bool started_ = false;
  Napi::FunctionReference on_batch_;
  std::unique_ptr<Napi::AsyncContext> async_context_;

  std::vector<uint8_t> batch_;
  size_t batch_records_ = 0;
  bool batch_full_ = false;
  size_t next_ring_ = 0;  // ring that the next drain starts with
};

}  // namespace zerohold

#endif  // ZEROHOLD_NATIVE_RING_BUFFER_H
