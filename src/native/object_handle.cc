// SPDX-License-Identifier: Apache-2.0
#include "object_handle.h"

#include "sys_error.h"

namespace zerohold {

ObjectHandle::ObjectHandle(bpf_object* object, std::string path)
    : object_(object), path_(std::move(path)) {
  size_t slash = path_.rfind('/');
  file_name_ = slash == std::string::npos ? path_ : path_.substr(slash + 1);
}

ObjectHandle::~ObjectHandle() { Close(); }

bpf_object* ObjectHandle::Use(Napi::Env env) const {
  if (object_ == nullptr) {
    ThrowError(env, "BPF object " + file_name_ + " is closed", "ERR_ZH_CLOSED");
  }
  if (loading) {
    ThrowError(env, "BPF object " + file_name_ + " is still loading",
               "ERR_ZH_BUSY");
  }
  return object_;
}

void ObjectHandle::Close() {
  if (object_ == nullptr) return;
  bpf_object__close(object_);
  object_ = nullptr;
}

}  // namespace zerohold
