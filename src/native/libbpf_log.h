// SPDX-License-Identifier: Apache-2.0
#ifndef ZEROHOLD_NATIVE_LIBBPF_LOG_H
#define ZEROHOLD_NATIVE_LIBBPF_LOG_H

#include <string>

namespace zerohold {

// Routes libbpf's messages to LibbpfLogCapture and drops all others, so
// libbpf never writes to stderr. Call once when the addon loads.
void InstallLibbpfPrint();

// Collects libbpf's warnings printed on this thread while the object lives,
// so an error can show why libbpf failed. Captures do not nest.
class LibbpfLogCapture {
 public:
  LibbpfLogCapture();
  ~LibbpfLogCapture();
  LibbpfLogCapture(const LibbpfLogCapture&) = delete;
  LibbpfLogCapture& operator=(const LibbpfLogCapture&) = delete;

  const std::string& Text() const { return text_; }

 private:
  std::string text_;
};

}  // namespace zerohold

#endif  // ZEROHOLD_NATIVE_LIBBPF_LOG_H
