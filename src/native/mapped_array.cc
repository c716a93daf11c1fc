// SPDX-License-Identifier: Apache-2.0
#include "mapped_array.h"

#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

namespace zerohold {

namespace {

uint64_t RoundUp(uint64_t value, uint64_t multiple) {
  return (value + multiple - 1) / multiple * multiple;
}

}  // namespace

int MappedArray::Map(int fd, uint32_t value_size, uint32_t max_entries) {
  Unmap();

  uint64_t stride = RoundUp(value_size, 8);
  uint64_t page_size = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  uint64_t length = RoundUp(stride * max_entries, page_size);

  void* base =
      mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) return errno;

  base_ = static_cast<uint8_t*>(base);
  length_ = length;
  stride_ = stride;
  value_size_ = value_size;
  return 0;
}

void MappedArray::Unmap() {
  if (base_ == nullptr) return;
  munmap(base_, length_);
  base_ = nullptr;
  length_ = 0;
}

void MappedArray::WriteSeqlocked(uint32_t index, const uint8_t* value) {
  uint8_t* element = base_ + index * stride_;
  uint32_t* seq = reinterpret_cast<uint32_t*>(element);

  // An odd seq on entry means a writer died between its two stores. Start
  // from the next even value so that the final store is even again.
  uint32_t start = __atomic_load_n(seq, __ATOMIC_RELAXED);
  start += start & 1;

  // The fence orders the odd seq before every field store, so a reader
  // that loads a new field value finds seq odd or changed on its second
  // load.
  __atomic_store_n(seq, start + 1, __ATOMIC_RELAXED);
  __atomic_thread_fence(__ATOMIC_RELEASE);

  std::memcpy(element + kSeqSize, value + kSeqSize, value_size_ - kSeqSize);

  // The fence and the release store order the field stores before the even
  // seq, so a reader that sees the even value reads complete fields.
  __atomic_thread_fence(__ATOMIC_RELEASE);
  __atomic_store_n(seq, start + 2, __ATOMIC_RELEASE);
}

void MappedArray::Read(uint32_t index, uint8_t* out) const {
  std::memcpy(out, base_ + index * stride_, value_size_);
}

}  // namespace zerohold
