// SPDX-License-Identifier: Apache-2.0
#ifndef ZEROHOLD_NATIVE_PINNED_OBJECT_H
#define ZEROHOLD_NATIVE_PINNED_OBJECT_H

#include <napi.h>

#include <string>

#include "unique_fd.h"

namespace zerohold {

// The anonymous inode names the kernel gives BPF file descriptors.
constexpr const char* kBpfMapKind = "bpf-map";
constexpr const char* kBpfLinkKind = "bpf-link";

// Opens a bpf object pinned at path and checks that it is of the expected
// kind, because bpf_obj_get() returns maps, programs and links alike.
// Throws an Error with code, errno and syscall on failure.
UniqueFd OpenPinned(Napi::Env env, const std::string& path,
                    const char* expected_kind);

}  // namespace zerohold

#endif  // ZEROHOLD_NATIVE_PINNED_OBJECT_H
