// A named, typed view of tensor bytes that live elsewhere (a mapped file, or storage
// owned by the model). Shapes are row-major, outermost first, as in PyTorch:
// a Linear weight is [out_features, in_features].
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace headinfer {

enum class DType : uint8_t { F32, F16, BF16, Q8_0 };

const char* dtype_name(DType t);
// Bytes of n elements; n must be a whole number of blocks for block types.
size_t dtype_bytes(DType t, int64_t n);
// Q8_0: blocks of 32 values, an f16 scale then 32 int8 (34 bytes).
constexpr int kQ8_0Block = 32;
constexpr int kQ8_0BlockBytes = 34;

struct Tensor {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const void* data = nullptr;

  int64_t numel() const;
  size_t nbytes() const { return dtype_bytes(dtype, numel()); }
  int64_t rows() const { return shape.empty() ? 0 : (shape.size() == 1 ? 1 : shape[0]); }
  int64_t cols() const { return shape.empty() ? 0 : shape.back(); }
  bool empty() const { return data == nullptr; }
  std::string shape_str() const;  // "[4096, 4096]"
};

// Converts any supported dtype to f32 (dequantizing blocks). n counts elements.
void to_f32(DType t, const void* src, float* dst, int64_t n);

}  // namespace headinfer
