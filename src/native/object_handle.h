// SPDX-License-Identifier: Apache-2.0
#ifndef ZEROHOLD_NATIVE_OBJECT_HANDLE_H
#define ZEROHOLD_NATIVE_OBJECT_HANDLE_H

#include <bpf/libbpf.h>
#include <napi.h>

#include <string>

namespace zerohold {

// Shared owner of one bpf_object. The BpfObject wrapper, every map and
// program handle taken from it and a running load hold a std::shared_ptr,
// so the object is closed when the last of them goes away, or earlier by
// an explicit Close(). All members are used on the JS thread only, except
// that a LoadWorker uses Get() while `loading` is set.
class ObjectHandle {
 public:
  ObjectHandle(bpf_object* object, std::string path);
  ~ObjectHandle();
  ObjectHandle(const ObjectHandle&) = delete;
  ObjectHandle& operator=(const ObjectHandle&) = delete;

  // Returns the object for a JS call; throws if it is closed or loading.
  bpf_object* Use(Napi::Env env) const;

  // nullptr after Close().
  bpf_object* Get() const { return object_; }

  const std::string& Path() const { return path_; }

  // The file name without directories, used in error messages.
  const std::string& FileName() const { return file_name_; }

  void Close();

  bool loading = false;  // a load() worker owns the object right now
  bool loaded = false;   // load() finished, whether or not it succeeded

 private:
  bpf_object* object_;
  std::string path_;
  std::string file_name_;
};

}  // namespace zerohold

#endif  // ZEROHOLD_NATIVE_OBJECT_HANDLE_H
