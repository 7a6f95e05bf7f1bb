// Dense matmul of f32 activations with a weight matrix in its stored dtype:
//   out[n, w.rows] = x[n, w.cols] @ w^T (+ bias[w.rows])
// Weights: F32, F16, BF16, Q8_0, read in place (no conversion at load). Products
// are formed from the weight converted exactly to f32 (Q8_0: scale * q in f32, as
// to_f32 does) and accumulated in f32.
//
// Every output element is reduced in one fixed order that depends only on
// w.cols and the ISA (16 or 8 lanes, each summing a strided slice of k in
// order, then a fixed tree): results are bit-identical across repeated calls,
// thread counts, and n (a token gets the same logits in prefill and in decode).
#pragma once

#include "backend/backend.hpp"
#include "common/thread_pool.hpp"

namespace headinfer {

// x_stride: floats between input rows (0: w.cols, packed rows).
void cpu_matmul(ThreadPool& pool, const float* x, int n, const Mat& w, const Mat* bias, float* out,
                int64_t x_stride = 0);

// Which vector ISA the kernels use. Auto picks AVX-512 (F, BW, VL) when the CPU
// has it, else AVX2+FMA+F16C (the build baseline).
enum class CpuIsa { Auto, Avx2, Avx512 };
// Forces an ISA (tests run both paths on one machine); Auto restores detection.
// Asking for AVX-512 on a CPU without it fails with an Error.
void cpu_matmul_set_isa(CpuIsa isa);
CpuIsa cpu_matmul_isa();  // the one in use (never Auto)
const char* cpu_isa_name(CpuIsa isa);

// Batches up to this many tokens are done as GEMV (each weight row streamed once,
// converted in registers); larger ones as a blocked GEMM that converts weight
// tiles to f32 once per block of tokens. Both give identical numbers.
int cpu_matmul_gemv_max_tokens();
void cpu_matmul_set_gemv_max_tokens(int n);  // tuning / tests

}  // namespace headinfer
