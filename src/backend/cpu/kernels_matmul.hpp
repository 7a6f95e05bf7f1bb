// Internal: the per-ISA matmul kernels behind cpu_matmul (matmul.cpp picks one).
#pragma once

#include <cstddef>
#include <cstdint>

#include "format/tensor.hpp"

namespace headinfer::cpu_kern {

// One matmul: out[t * ldo + r] = dot(x[t * ldx + 0 .. K), row r of w).
struct MatmulJob {
  const float* x = nullptr;
  int64_t ldx = 0;
  int n = 0;                    // tokens
  DType dt = DType::F32;
  const uint8_t* w = nullptr;   // row r starts at w + r * wstride
  size_t wstride = 0;
  int64_t K = 0;                // w.cols
  float* out = nullptr;
  int64_t ldo = 0;
};

// The widest token tile of the GEMV kernels; larger n is done in groups of it.
constexpr int kGemvMaxTile = 4;

// GEMV: all n tokens against rows [r0, r1), each weight row read once per group
// of kGemvMaxTile tokens, converted in registers.
void gemv_avx2(const MatmulJob& j, int64_t r0, int64_t r1);
void gemv_avx512(const MatmulJob& j, int64_t r0, int64_t r1);

// GEMM block: tokens [t0, t1) x rows [r0, r1). Non-f32 weights are first
// converted into scratch ((r1 - r0) * gemm_scratch_stride(K) floats, 64-byte
// aligned), so each weight is converted once per block rather than per token.
void gemm_avx2(const MatmulJob& j, int64_t t0, int64_t t1, int64_t r0, int64_t r1, float* scratch);
void gemm_avx512(const MatmulJob& j, int64_t t0, int64_t t1, int64_t r0, int64_t r1, float* scratch);

inline int64_t gemm_scratch_stride(int64_t K) { return (K + 15) / 16 * 16; }

}  // namespace headinfer::cpu_kern
