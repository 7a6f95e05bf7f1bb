// GEMV for a few input rows (decode): out[t, r] = sum_k x[t * x_stride + k] * W[r, k]
// (+ bias[r]) with BF16 / F16 W, f32 x and out, f32 accumulation. At n <= a few
// the product is bound by reading W once, so the kernel streams W with 16-byte loads
// and reads x (small, cached) directly as f32: no conversion launch, and the f32
// activations give the CPU backend's products exactly (only the summation order differs).
//
// A warp owns kRowsPerWarp(n) consecutive output rows: each x value loaded is used
// for that many W rows, which keeps the L1 traffic of x (32 bytes per token per 16
// bytes of W) below what the SM can serve at HBM speed for n up to kGemvMaxRows.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/device_util.cuh"
#include "backend/cuda/gemv_dot.cuh"
#include "backend/cuda/kernels.hpp"

namespace headinfer::cuda {
namespace {

constexpr int kWarps = 8;  // warps per block

// Few rows per warp for n <= 2 (more warps to hide latency), more for larger n (x reuse).
template <int N>
constexpr int rows_per_warp() {
  return N <= 2 ? 2 : 4;
}

// Vector path: C % 8 == 0, W and x 16-byte aligned, x_stride % 4 == 0 (checked by the
// launcher). Lane l handles the 8-element chunks l, l + 32, ... of every row it owns,
// in that order whatever kUnroll (16-byte loads per W row in flight per step) and RW
// (rows per warp) are: the tunings differ in speed, never in bits.
template <typename T, int N, int kUnroll, int RW>
__global__ void __launch_bounds__(kWarps * 32)
    gemv_vec_kernel(const T* __restrict__ w, int R, int C, const float* __restrict__ x, int64_t x_stride,
                    const void* __restrict__ bias, DType bias_dt, float* __restrict__ out, int prefetch_lines) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t r0 = (static_cast<int64_t>(blockIdx.x) * kWarps + warp) * RW;
  if (r0 >= R) return;  // warp-uniform: the shuffles below see the whole warp
  // Rows past R (the last warp) repeat row R - 1: loads stay in bounds, stores skip them.
  const uint4* wr[RW];
#pragma unroll
  for (int j = 0; j < RW; ++j) {
    const int64_t r = r0 + j < R ? r0 + j : R - 1;
    wr[j] = reinterpret_cast<const uint4*>(w + r * C);
  }
  const int chunks = C / 8;
  gemv_prefetch_then_wait<RW>(wr, prefetch_lines, lane);
  float acc[N][RW];
  gemv_warp_dot<T, N, kUnroll, RW>(wr, chunks, x, x_stride, lane, acc);
  if (lane == 0) {
#pragma unroll
    for (int j = 0; j < RW; ++j) {
      const int64_t r = r0 + j;
      if (r >= R) break;
      const float b = bias ? load_as_f32(bias, bias_dt, r) : 0.f;
#pragma unroll
      for (int t = 0; t < N; ++t) out[t * static_cast<int64_t>(R) + r] = acc[t][j] + b;
    }
  }
}

// Any shape and alignment (odd C, x_stride not a multiple of 4): one row per warp,
// element loads. Only reached for shapes no Llama-style model has, so kept plain.
template <typename T, int N>
__global__ void __launch_bounds__(kWarps * 32)
    gemv_scalar_kernel(const T* __restrict__ w, int R, int C, const float* __restrict__ x, int64_t x_stride,
                       const void* __restrict__ bias, DType bias_dt, float* __restrict__ out) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kWarps + warp;
  if (r >= R) return;  // warp-uniform
  pdl_wait();
  pdl_launch_dependents();
  const T* wr = w + r * C;
  float acc[N] = {};
  for (int k = lane; k < C; k += 32) {
    const float wk = to_f32(wr[k]);
#pragma unroll
    for (int t = 0; t < N; ++t) acc[t] = fmaf(x[t * x_stride + k], wk, acc[t]);
  }
#pragma unroll
  for (int t = 0; t < N; ++t) acc[t] = warp_sum(acc[t]);
  if (lane == 0) {
    const float b = bias ? load_as_f32(bias, bias_dt, r) : 0.f;
#pragma unroll
    for (int t = 0; t < N; ++t) out[t * static_cast<int64_t>(R) + r] = acc[t] + b;
  }
}

template <typename T, int N, int U, int RW>
void launch_vec(const T* w, int R, int C, const float* x, int64_t x_stride, const void* bias, DType bias_dt, float* out,
                int64_t prefetch_bytes, cudaStream_t s) {
  constexpr int rows_per_block = kWarps * RW;
  const unsigned blocks = static_cast<unsigned>((static_cast<int64_t>(R) + rows_per_block - 1) / rows_per_block);
  launch_maybe_pdl(gemv_vec_kernel<T, N, U, RW>, dim3(blocks), dim3(kWarps * 32), 0, s, w, R, C, x, x_stride, bias,
                   bias_dt, out, gemv_prefetch_lines<T>(R, C, prefetch_bytes));
  HI_CUDA_CHECK_LAUNCH("gemv_vec_kernel");
}

template <typename T, int N>
void launch_n(const T* w, int R, int C, const float* x, int64_t x_stride, const void* bias, DType bias_dt, float* out,
              bool vec, GemvTuning tune, cudaStream_t s) {
  if (vec) {
    // Decode (n <= 2) has the tunings; more rows keep the default.
    const int64_t pf = tune.prefetch_bytes;
    if constexpr (N <= 2) {
      if (tune.by_shape) {
        const int lu = tune.long_unroll, lrw = tune.long_rows_per_warp;
        tune = N == 1 && R <= C      ? GemvTuning{lu, lrw, false}
               : N == 1 && R < 16384 ? GemvTuning{4, 1, false}
                                     : GemvTuning{2, 2, false};
      }
      if (tune.unroll == 8) return launch_vec<T, N, 8, 1>(w, R, C, x, x_stride, bias, bias_dt, out, pf, s);
      if (tune.unroll == 4 && tune.rows_per_warp == 1)
        return launch_vec<T, N, 4, 1>(w, R, C, x, x_stride, bias, bias_dt, out, pf, s);
      if (tune.unroll == 4)
        return launch_vec<T, N, 4, rows_per_warp<N>()>(w, R, C, x, x_stride, bias, bias_dt, out, pf, s);
      if (tune.rows_per_warp == 1) return launch_vec<T, N, 2, 1>(w, R, C, x, x_stride, bias, bias_dt, out, pf, s);
    }
    launch_vec<T, N, 2, rows_per_warp<N>()>(w, R, C, x, x_stride, bias, bias_dt, out, pf, s);
  } else {
    const unsigned blocks = static_cast<unsigned>((static_cast<int64_t>(R) + kWarps - 1) / kWarps);
    launch_maybe_pdl(gemv_scalar_kernel<T, N>, dim3(blocks), dim3(kWarps * 32), 0, s, w, R, C, x, x_stride, bias,
                     bias_dt, out);
    HI_CUDA_CHECK_LAUNCH("gemv_scalar_kernel");
  }
}

template <typename T>
void launch_typed(const T* w, int R, int C, const float* x, int64_t x_stride, int n, const void* bias, DType bias_dt,
                  float* out, bool vec, GemvTuning t, cudaStream_t s) {
  static_assert(kGemvMaxRows == 8, "the switch below covers n = 1..8");
  switch (n) {
    case 1: launch_n<T, 1>(w, R, C, x, x_stride, bias, bias_dt, out, vec, t, s); break;
    case 2: launch_n<T, 2>(w, R, C, x, x_stride, bias, bias_dt, out, vec, t, s); break;
    case 3: launch_n<T, 3>(w, R, C, x, x_stride, bias, bias_dt, out, vec, t, s); break;
    case 4: launch_n<T, 4>(w, R, C, x, x_stride, bias, bias_dt, out, vec, t, s); break;
    case 5: launch_n<T, 5>(w, R, C, x, x_stride, bias, bias_dt, out, vec, t, s); break;
    case 6: launch_n<T, 6>(w, R, C, x, x_stride, bias, bias_dt, out, vec, t, s); break;
    case 7: launch_n<T, 7>(w, R, C, x, x_stride, bias, bias_dt, out, vec, t, s); break;
    default: launch_n<T, 8>(w, R, C, x, x_stride, bias, bias_dt, out, vec, t, s); break;
  }
}

// 16-byte loads need every W row (C 2-byte values) and every x row 16-byte aligned.
bool vector_loads(const void* w, int C, const float* x, int64_t x_stride) {
  return vector_rows(8, C, {}, {w}, 16) && vector_rows(4, x_stride, {}, {x}, 16);
}

}  // namespace

GemvTuning gemv_tuning_from_env() {
  GemvTuning t;
  // HEADINFER_CUDA_GEMV_TUNE=U,RW: U 16-byte loads in flight per row (2, 4 or 8: 8 is
  // one row per warp whatever RW, a whole 4096-wide BF16 row in flight at once), RW rows
  // per warp for n <= 2 (1 or 2), the same for every matrix; for benchmarks.
  if (const char* e = std::getenv("HEADINFER_CUDA_GEMV_TUNE")) {
    int u = 0, rw = 0;
    if (std::sscanf(e, "%d,%d", &u, &rw) == 2) {
      t.unroll = u == 8 ? 8 : u == 4 ? 4 : 2;
      t.rows_per_warp = rw == 1 ? 1 : 2;
      t.by_shape = false;
    }
  }
  if (const char* e = std::getenv("HEADINFER_CUDA_GEMV_TUNE_LONG")) {
    int u = 0, rw = 0;
    if (std::sscanf(e, "%d,%d", &u, &rw) == 2) {
      t.long_unroll = u == 8 ? 8 : u == 4 ? 4 : 2;
      t.long_rows_per_warp = rw == 1 ? 1 : 2;
    }
  }
  if (const char* e = std::getenv("HEADINFER_CUDA_GEMV_PREFETCH_MB")) t.prefetch_bytes = std::atoll(e) << 20;
  return t;
}

void launch_gemv(const float* x, int64_t x_stride, int n, const void* w, DType wdt, int R, int C, const void* bias,
                 DType bias_dt, float* out, cudaStream_t s, GemvTuning tune) {
  if (n <= 0 || R <= 0) return;
  HI_CHECK(n <= kGemvMaxRows, "cuda gemv: " << n << " input rows (at most " << kGemvMaxRows << ")");
  HI_CHECK(wdt == DType::BF16 || wdt == DType::F16, "cuda gemv: weight dtype " << dtype_name(wdt));
  HI_CHECK(C > 0 && x_stride >= C, "cuda gemv: input rows " << x_stride << " floats apart for " << C << " columns");
  HI_CHECK(!bias || bias_dt == DType::F32 || bias_dt == DType::BF16 || bias_dt == DType::F16,
           "cuda gemv: bias dtype " << dtype_name(bias_dt));
  const bool vec = vector_loads(w, C, x, x_stride);
  if (wdt == DType::BF16)
    launch_typed(static_cast<const __nv_bfloat16*>(w), R, C, x, x_stride, n, bias, bias_dt, out, vec, tune, s);
  else
    launch_typed(static_cast<const __half*>(w), R, C, x, x_stride, n, bias, bias_dt, out, vec, tune, s);
}

}  // namespace headinfer::cuda
