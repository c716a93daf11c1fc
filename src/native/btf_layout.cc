// SPDX-License-Identifier: Apache-2.0
#include "btf_layout.h"

#include <linux/btf.h>

namespace zerohold {

namespace {

// Nesting deeper than this is not a map key or value that zerohold
// defines. It also ends a malformed chain of typedefs.
constexpr int kMaxDepth = 32;

void Append(const struct btf* btf, uint32_t type_id, int depth,
            std::string* out);

void AppendMembers(const struct btf* btf, const struct btf_type* type,
                   int depth, std::string* out) {
  out->append(btf_is_union(type) ? "union(" : "struct(");
  out->append(std::to_string(type->size));
  out->append("){");

  const struct btf_member* member = btf_members(type);
  for (uint16_t i = 0; i < btf_vlen(type); i++, member++) {
    if (i > 0) out->push_back(',');
    const char* name = btf__name_by_offset(btf, member->name_off);
    out->append(name != nullptr && name[0] != '\0' ? name : "_");
    out->push_back(':');
    Append(btf, member->type, depth + 1, out);
    out->push_back('@');
    out->append(std::to_string(btf_member_bit_offset(type, i)));
    uint32_t bits = btf_member_bitfield_size(type, i);
    if (bits != 0) out->append(":" + std::to_string(bits));
  }
  out->push_back('}');
}

void Append(const struct btf* btf, uint32_t type_id, int depth,
            std::string* out) {
  const struct btf_type* type = btf__type_by_id(btf, type_id);
  if (type == nullptr || depth > kMaxDepth) {
    out->append("?");
    return;
  }

  // Typedefs and qualifiers do not change the bytes.
  while (btf_is_typedef(type) || btf_is_const(type) || btf_is_volatile(type) ||
         btf_is_restrict(type) || btf_is_type_tag(type)) {
    if (++depth > kMaxDepth) {
      out->append("?");
      return;
    }
    type = btf__type_by_id(btf, type->type);
    if (type == nullptr) {
      out->append("?");
      return;
    }
  }

  if (btf_kind(type) == BTF_KIND_UNKN) {
    out->append("void");
  } else if (btf_is_int(type)) {
    uint32_t encoding = btf_int_encoding(type);
    if (encoding & BTF_INT_BOOL) out->append("bool");
    else out->append((encoding & BTF_INT_SIGNED) ? "s" : "u");
    out->append(std::to_string(btf_int_bits(type)));
    if (btf_int_offset(type) != 0) out->append("+" + std::to_string(btf_int_offset(type)));
  } else if (btf_is_ptr(type)) {
    out->append("ptr");
  } else if (btf_is_array(type)) {
    const struct btf_array* array = btf_array(type);
    Append(btf, array->type, depth + 1, out);
    out->append("[" + std::to_string(array->nelems) + "]");
  } else if (btf_is_composite(type)) {
    AppendMembers(btf, type, depth, out);
  } else if (btf_is_any_enum(type)) {
    out->append("enum" + std::to_string(type->size * 8));
  } else if (btf_is_float(type)) {
    out->append("f" + std::to_string(type->size * 8));
  } else if (btf_is_fwd(type)) {
    out->append("fwd");
  } else {
    // Functions, variables and sections are not map keys or values.
    out->append("kind" + std::to_string(btf_kind(type)));
  }
}

}  // namespace

std::string BtfLayout(const struct btf* btf, uint32_t type_id) {
  if (btf == nullptr || type_id == 0) return "";

  std::string layout;
  Append(btf, type_id, 0, &layout);
  return layout;
}

}  // namespace zerohold
