// Reader for Hugging Face .safetensors files: an 8-byte little-endian header length,
// a JSON header {"name": {"dtype", "shape", "data_offsets": [begin, end]}, ...,
// "__metadata__": {...}}, then the raw tensor bytes. Tensors are views into the
// bytes given (zero copy); the parser validates every offset against them.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/mapped_file.hpp"
#include "format/tensor.hpp"

namespace headinfer {

class SafetensorsFile {
 public:
  // Maps the file; the returned object keeps the mapping alive.
  static SafetensorsFile open(const std::string& path);
  // Parses bytes owned by the caller (they must outlive the result). `source` names
  // them in errors (a path, or "<memory>").
  static SafetensorsFile parse(std::span<const uint8_t> bytes, const std::string& source);

  const std::string& source() const { return source_; }
  const std::vector<Tensor>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // nullptr when absent.
  const Tensor* find(const std::string& name) const;
  // Throws Error naming the file and tensor when absent.
  const Tensor& get(const std::string& name) const;
  // The mapping (null for parse()); share it to keep tensor data alive.
  const std::shared_ptr<MappedFile>& mapping() const { return mapping_; }

 private:
  std::string source_;
  std::shared_ptr<MappedFile> mapping_;
  std::vector<Tensor> tensors_;  // in header order
  std::unordered_map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace headinfer
