// SPDX-License-Identifier: Apache-2.0
#ifndef ZEROHOLD_NATIVE_BTF_LAYOUT_H
#define ZEROHOLD_NATIVE_BTF_LAYOUT_H

#include <bpf/btf.h>

#include <cstdint>
#include <string>

namespace zerohold {

// Describes the memory layout of a BTF type as a string that is equal for
// two types exactly when their bytes mean the same: member names, bit
// offsets and the layouts of member types, with typedefs and qualifiers
// resolved and type names left out. For example the value of zh_services
// reads "struct(16){state:u32@0,flags:u32@32,wake_interval_ns:u64@64}".
// Returns "" for type id 0 or a null btf, which mean that the map carries
// no BTF and its layout cannot be compared.
std::string BtfLayout(const struct btf* btf, uint32_t type_id);

}  // namespace zerohold

#endif  // ZEROHOLD_NATIVE_BTF_LAYOUT_H
