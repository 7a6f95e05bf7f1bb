// A layer's Q, K and V projections run as one GEMM, and gate and up as another: each
// group's weight matrices are concatenated by rows, once, into one device matrix
// (the Executor builds them at construction). Fewer, larger GEMMs and one input
// conversion each; on the CPU every output is still summed in the same fixed order,
// so the numbers do not change. This is the layout rule, shared by the Executor and
// the footprint (which predicts their bytes from shapes alone).
#pragma once

#include <cstdint>
#include <vector>

#include "model/weights.hpp"

namespace headinfer {

// The dtype a backend reads a weight in once prepared (Q8_0 is dequantized to F32).
inline DType prepared_dtype(DType t) { return t == DType::Q8_0 ? DType::F32 : t; }

// Matrices stacked by rows: [sum of rows, cols].
struct FusedRows {
  std::vector<const Tensor*> parts;  // in row order
  DType dtype = DType::F32;          // the parts' common prepared dtype; F32 when they differ
  int64_t rows = 0, cols = 0;
  size_t bytes() const { return dtype_bytes(dtype, rows * cols); }
};

// Vectors concatenated into one F32 vector; a missing part (an empty tensor) is zeros.
struct FusedVector {
  std::vector<const Tensor*> parts;
  std::vector<int64_t> lengths;  // of each part, present or not
  int64_t length = 0;
  bool any = false;  // whether any part is present (else there is no vector)
  size_t bytes() const { return sizeof(float) * static_cast<size_t>(length); }
};

FusedRows fused_qkv(const LayerWeights& w);      // [wq; wk; wv]
FusedRows fused_gate_up(const LayerWeights& w);  // [w_gate; w_up]
FusedVector fused_qkv_bias(const LayerWeights& w);  // [bq | bk | bv]

}  // namespace headinfer
