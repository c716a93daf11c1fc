// SPDX-License-Identifier: Apache-2.0
#include "ring_buffer.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/epoll.h>

#include <cstring>

#include "bpf_map.h"
#include "sys_error.h"

namespace zerohold {

namespace {

constexpr size_t kRecordHeaderSize = 8;

}  // namespace

void RingBuffer::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function constructor =
      DefineClass(env, "RingBuffer",
                  {
                      InstanceMethod<&RingBuffer::Start>("start"),
                      InstanceMethod<&RingBuffer::Stop>("stop"),
                      InstanceMethod<&RingBuffer::Consume>("consume"),
                      InstanceMethod<&RingBuffer::Close>("close"),
                  });
  exports.Set("RingBuffer", constructor);
}

RingBuffer::RingBuffer(const Napi::CallbackInfo& info) : ObjectWrap(info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArray() || info[0].As<Napi::Array>().Length() == 0) {
    ThrowTypeError(env, "maps must be a non-empty array of BpfMap",
                   "ERR_INVALID_ARG_TYPE");
  }
  if (!info[1].IsFunction()) {
    ThrowTypeError(env, "onBatch must be a function", "ERR_INVALID_ARG_TYPE");
  }
  Napi::Array maps = info[0].As<Napi::Array>();

  epoll_fd_.Reset(epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_fd_.Valid()) ThrowSysError(env, "epoll_create1", "", errno);

  for (uint32_t i = 0; i < maps.Length(); i++) {
    std::string name = "maps[" + std::to_string(i) + "]";
    BpfMap* map = BpfMap::FromValue(env, maps.Get(i), name.c_str());
    if (map->Info().type != BPF_MAP_TYPE_RINGBUF) {
      ThrowTypeError(env,
                     "map " + map->Info().name +
                         " is not a ring buffer (type " +
                         std::to_string(map->Info().type) + ")",
                     "ERR_INVALID_ARG_VALUE");
    }

    auto ring = std::make_unique<Ring>(this, i);
    ring->map_fd.Reset(fcntl(map->Fd(env), F_DUPFD_CLOEXEC, 0));
    if (!ring->map_fd.Valid()) {
      ThrowSysError(env, "fcntl", map->Info().name, errno);
    }

    ring->reader =
        ring_buffer__new(ring->map_fd.Get(), OnSample, ring.get(), nullptr);
    if (ring->reader == nullptr) {
      ThrowSysError(env, "ring_buffer__new", map->Info().name, errno);
    }

    epoll_event event = {};
    event.events = EPOLLIN;
    if (epoll_ctl(epoll_fd_.Get(), EPOLL_CTL_ADD,
                  ring_buffer__epoll_fd(ring->reader), &event) != 0) {
      ThrowSysError(env, "epoll_ctl", map->Info().name, errno);
    }
    rings_.push_back(std::move(ring));
  }

  on_batch_ = Napi::Persistent(info[1].As<Napi::Function>());
  async_context_ =
      std::make_unique<Napi::AsyncContext>(env, "zerohold.RingBuffer");
  batch_.reserve(64 * 1024);

  uv_loop_t* loop = nullptr;
  napi_status status = napi_get_uv_event_loop(env, &loop);
  NAPI_THROW_IF_FAILED_VOID(env, status);

  // The epoll descriptor becomes readable when any ring has data, and
  // stays so (level-triggered) while data is left after a capped batch.
  poll_ = new uv_poll_t;
  int err = uv_poll_init(loop, poll_, epoll_fd_.Get());
  if (err != 0) {
    delete poll_;
    poll_ = nullptr;
    ThrowSysError(env, "uv_poll_init", "", -err);
  }
  poll_->data = this;
}

RingBuffer::~RingBuffer() {
  // No Unref() here: a started RingBuffer holds a reference to itself, so
  // it is only finalized when stopped, or when the environment shuts down.
  Release();
}

void RingBuffer::RequireOpen(Napi::Env env) const {
  if (poll_ == nullptr) {
    ThrowError(env, "ring buffer is closed", "ERR_ZH_CLOSED");
  }
}

void RingBuffer::Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RequireOpen(env);
  if (started_) return;

  int err = uv_poll_start(poll_, UV_READABLE, OnReadable);
  if (err != 0) ThrowSysError(env, "uv_poll_start", "", -err);

  // While started, the loop may call back at any time, so JS must not
  // collect this object.
  started_ = true;
  Ref();
}

void RingBuffer::Stop(const Napi::CallbackInfo&) { StopPolling(); }

void RingBuffer::StopPolling() {
  if (!started_) return;
  uv_poll_stop(poll_);
  started_ = false;
  Unref();
}

Napi::Value RingBuffer::Consume(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RequireOpen(env);

  size_t records = Drain(env);
  if (records > 0) Deliver(env, false);
  return Napi::Number::New(env, static_cast<double>(records));
}

void RingBuffer::Close(const Napi::CallbackInfo&) {
  StopPolling();
  Release();
}

void RingBuffer::Release() {
  if (poll_ != nullptr) {
    // libuv still owns the handle until the close callback runs.
    poll_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(poll_), [](uv_handle_t* handle) {
      delete reinterpret_cast<uv_poll_t*>(handle);
    });
    poll_ = nullptr;
  }

  rings_.clear();
  epoll_fd_.Reset();
  on_batch_.Reset();
}

size_t RingBuffer::Drain(Napi::Env env) {
  batch_.clear();
  batch_records_ = 0;
  batch_full_ = false;

  size_t count = rings_.size();
  for (size_t step = 0; step < count; step++) {
    size_t index = (next_ring_ + step) % count;
    int err = ring_buffer__consume(rings_[index]->reader);

    // OnSample stopped this ring because the batch is full. Its remaining
    // records wait, and the next drain starts with the ring after it, so
    // one busy ring cannot starve the others.
    if (batch_full_) {
      next_ring_ = (index + 1) % count;
      break;
    }
    if (err < 0) {
      ThrowSysError(env, "ring_buffer__consume",
                    "ring " + std::to_string(index), err);
    }
  }
  return batch_records_;
}

int RingBuffer::OnSample(void* context, void* data, size_t size) {
  Ring* ring = static_cast<Ring*>(context);
  RingBuffer* self = ring->owner;

  size_t offset = self->batch_.size();
  size_t padded = (size + 7) & ~size_t{7};
  self->batch_.resize(offset + kRecordHeaderSize + padded);

  uint32_t header[2] = {ring->index, static_cast<uint32_t>(size)};
  std::memcpy(self->batch_.data() + offset, header, sizeof(header));
  std::memcpy(self->batch_.data() + offset + kRecordHeaderSize, data, size);
  self->batch_records_++;

  // A negative return makes libbpf stop after this record, which it has
  // already consumed.
  if (self->batch_.size() >= kRingBatchMaxBytes ||
      self->batch_records_ >= kRingBatchMaxRecords) {
    self->batch_full_ = true;
    return -ENOBUFS;
  }
  return 0;
}

void RingBuffer::Deliver(Napi::Env env, bool from_loop) {
  Napi::Buffer<uint8_t> batch =
      Napi::Buffer<uint8_t>::Copy(env, batch_.data(), batch_.size());
  if (from_loop) {
    on_batch_.MakeCallback(Value(), {batch}, *async_context_);
  } else {
    on_batch_.Call(Value(), {batch});
  }
}

void RingBuffer::OnReadable(uv_poll_t* handle, int status, int) {
  RingBuffer* self = static_cast<RingBuffer*>(handle->data);
  if (self == nullptr) return;

  Napi::Env env = self->Env();
  Napi::HandleScope scope(env);

  // There is no JS caller to throw to: an exception from onBatch or a
  // failed poll becomes an uncaught exception, like one thrown by an
  // event listener.
  try {
    if (status < 0) ThrowSysError(env, "uv_poll", "ring buffer", -status);
    if (self->Drain(env) > 0) self->Deliver(env, true);
  } catch (const Napi::Error& error) {
    napi_fatal_exception(env, error.Value());
  }
}

}  // namespace zerohold
