// Sizes of ggml tensor types (block size in elements, bytes per block), needed to
// bounds-check tensors of every type, including ones we cannot compute with.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "format/tensor.hpp"

namespace headinfer {

struct GgmlTypeTraits {
  const char* name;
  uint32_t block_elems;
  uint32_t block_bytes;
};

// nullopt for ids the GGUF spec does not define (or has retired).
std::optional<GgmlTypeTraits> ggml_type_traits(uint32_t type);
// Our dtype for the ggml types we compute with, else nullopt.
std::optional<DType> ggml_type_dtype(uint32_t type);

}  // namespace headinfer
