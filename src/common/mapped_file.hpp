// A read-only memory mapping of a whole file. Model weights are used straight from
// the mapping, so loading a model costs no copy and no more RSS than what is touched.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace headinfer {

class MappedFile {
 public:
  // Throws Error naming the path when the file cannot be opened or mapped.
  static std::shared_ptr<MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile() = default;
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace headinfer
