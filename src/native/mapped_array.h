// SPDX-License-Identifier: Apache-2.0
#ifndef ZEROHOLD_NATIVE_MAPPED_ARRAY_H
#define ZEROHOLD_NATIVE_MAPPED_ARRAY_H

#include <cstddef>
#include <cstdint>

namespace zerohold {

// Shared mapping of the values of a BPF_F_MMAPABLE array map, and the
// sequence-locked write that lets a BPF program read an element without a
// helper call. The first u32 of each element is the sequence word, which
// is odd while a write is in progress. A reader loads seq, the fields,
// then seq again, and discards what it read if seq was odd or changed.
//
// Used on one thread only. The protocol allows one writer per element,
// because two processes writing the same element at once can produce a
// torn element with an even, unchanged seq.
class MappedArray {
 public:
  // Bytes at the start of each element that the sequence word occupies.
  static constexpr uint32_t kSeqSize = 4;

  MappedArray() = default;
  ~MappedArray() { Unmap(); }
  MappedArray(const MappedArray&) = delete;
  MappedArray& operator=(const MappedArray&) = delete;

  // Maps all max_entries elements of the array map fd read-write. The
  // kernel stores elements round_up(value_size, 8) bytes apart, from
  // offset 0. Returns 0, or a positive errno if mmap() failed.
  int Map(int fd, uint32_t value_size, uint32_t max_entries);

  // Idempotent. The kernel keeps the map alive while it is mapped, so
  // this must run when the map's descriptor owner closes it.
  void Unmap();

  bool Mapped() const { return base_ != nullptr; }

  // Copies bytes [kSeqSize, value_size) of value into element index,
  // framed by two stores to its sequence word. Bytes [0, kSeqSize) of
  // value are ignored. index must be below max_entries.
  void WriteSeqlocked(uint32_t index, const uint8_t* value);

  // Copies value_size bytes of element index, including the sequence word,
  // into out, with no retry. The copy can be torn only if a BPF program
  // or another process writes the element at the same time.
  void Read(uint32_t index, uint8_t* out) const;

 private:
  uint8_t* base_ = nullptr;
  size_t length_ = 0;
  size_t stride_ = 0;
  uint32_t value_size_ = 0;
};

}  // namespace zerohold

#endif  // ZEROHOLD_NATIVE_MAPPED_ARRAY_H
