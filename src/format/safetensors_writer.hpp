// Writes .safetensors files tensor by tensor from views that live elsewhere (a
// model's mapped or generated weights), so a 16 GB model is written with a few MiB
// of buffers: the header is computed from shapes alone, then each tensor's bytes go
// straight from its view to the file, converted in row batches where the file's
// dtype differs from the view's.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "format/tensor.hpp"

namespace headinfer {

struct TensorToWrite {
  std::string name;    // name in the file
  const Tensor* data;  // the view to read (shape and dtype of the source)
  DType dtype;         // dtype in the file: the source's, or F32 (any source), or BF16/F16 from F32
};

// Bytes a tensor takes in the file.
int64_t file_bytes(const TensorToWrite& t);

// Writes one file: header (padded with spaces to 8 bytes, as the format asks), then
// the tensors in the order given. Throws Error naming the path on any failure.
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace headinfer
