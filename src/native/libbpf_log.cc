// SPDX-License-Identifier: Apache-2.0
#include "libbpf_log.h"

#include <bpf/libbpf.h>

#include <cstdarg>
#include <cstdio>

namespace zerohold {

namespace {

// A failing load prints a few lines per program. The bound only stops a
// pathological object from growing the string without limit.
constexpr size_t kMaxCaptureBytes = 64 * 1024;

thread_local std::string* current_capture = nullptr;

int PrintToCapture(enum libbpf_print_level level, const char* format,
                   va_list args) {
  if (level == LIBBPF_DEBUG || current_capture == nullptr) return 0;
  if (current_capture->size() >= kMaxCaptureBytes) return 0;

  char line[1024];
  int length = vsnprintf(line, sizeof(line), format, args);
  if (length <= 0) return length;

  current_capture->append(line);
  if (static_cast<size_t>(length) >= sizeof(line)) {
    current_capture->append("...\n");
  }
  return length;
}

}  // namespace

void InstallLibbpfPrint() { libbpf_set_print(PrintToCapture); }

LibbpfLogCapture::LibbpfLogCapture() { current_capture = &text_; }

LibbpfLogCapture::~LibbpfLogCapture() { current_capture = nullptr; }

}  // namespace zerohold
