// SPDX-License-Identifier: Apache-2.0
#ifndef ZEROHOLD_NATIVE_BTF_LAYOUT_H
#define ZEROHOLD_NATIVE_BTF_LAYOUT_H

#include <bpf/btf.h>

#include <cstdint>
#include <string>

namespace zerohold {

// Returns the memory layout of a BTF type as a string: member names, bit
// offsets and the layouts of member types, with typedefs and qualifiers
// resolved and type names left out. Two types get the same string exactly
// when their bytes mean the same. For example the value of zh_services
// reads "struct(16){state:u32@0,flags:u32@32,wake_interval_ns:u64@64}".
// Returns "" for type id 0 or a null btf, because a map without BTF has
// no layout to compare.
std::string BtfLayout(const struct btf* btf, uint32_t type_id);

}  // namespace zerohold

#endif  // ZEROHOLD_NATIVE_BTF_LAYOUT_H
