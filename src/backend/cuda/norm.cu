// RMSNorm: one block per row; the sum of squares is reduced in f32 over a tree
// (per-thread partial sums, then warps, then the block). With a residual to add
// first, the sum is written back to x in the same pass (the layer boundary).
//
// Rows of up to 4096 float4s (hidden sizes to 16384) take the register kernel: each
// thread holds its few float4s from load to store, the weights are read before the
// wait on the preceding kernel, so a decode step's norm is one round trip to memory
// instead of a loop of them. Which kernel (and so the summation order) depends on the
// row length alone (and 16-byte alignment, which the engine's buffers have), so prefill
// rows and decode rows of a model get the same bits.
#include <cstdint>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/device_util.cuh"
#include "backend/cuda/kernels.hpp"

namespace headinfer::cuda {
namespace {

constexpr int kBlock = 256;

// TOut: float, or the BF16 / F16 rows a GEMM takes (each value rounded once from the
// same f32 the float rows hold).
template <typename TOut>
__global__ void __launch_bounds__(kBlock) rmsnorm_kernel(float* x, const float* add, const void* __restrict__ w,
                                                         DType wdt, float eps, int64_t cols, TOut* out) {
  __shared__ float warp_sums[kBlock / 32];
  __shared__ float inv_rms;
  pdl_wait();
  pdl_launch_dependents();
  float* xr = x + blockIdx.x * cols;
  TOut* yr = out + blockIdx.x * cols;
  float ss = 0.f;
  if (add != nullptr) {
    const float* ar = add + blockIdx.x * cols;
    for (int64_t i = threadIdx.x; i < cols; i += kBlock) {
      const float v = xr[i] + ar[i];
      xr[i] = v;  // read back below by this same thread
      ss = fmaf(v, v, ss);
    }
  } else {
    for (int64_t i = threadIdx.x; i < cols; i += kBlock) {
      const float v = xr[i];
      ss = fmaf(v, v, ss);
    }
  }
  ss = warp_sum(ss);
  if ((threadIdx.x & 31) == 0) warp_sums[threadIdx.x >> 5] = ss;
  __syncthreads();
  if (threadIdx.x < 32) {
    float v = threadIdx.x < kBlock / 32 ? warp_sums[threadIdx.x] : 0.f;
    v = warp_sum(v);
    if (threadIdx.x == 0) inv_rms = 1.0f / sqrtf(v / static_cast<float>(cols) + eps);
  }
  __syncthreads();
  const float r = inv_rms;
  // Each thread rewrites only the elements it read, so out may alias x.
  for (int64_t i = threadIdx.x; i < cols; i += kBlock) yr[i] = from_f32<TOut>(xr[i] * r * load_as_f32(w, wdt, i));
}

template <int V, typename TOut>  // float4s per thread
__global__ void __launch_bounds__(1024) rmsnorm_reg_kernel(float* x, const float* add, const void* __restrict__ w,
                                                           DType wdt, float eps, int64_t cols, TOut* out) {
  __shared__ float warp_sums[32];
  __shared__ float inv_rms;
  const int chunks = static_cast<int>(cols / 4);
  const int T = static_cast<int>(blockDim.x);
  float wv[V][4];
#pragma unroll
  for (int j = 0; j < V; ++j) {
    const int c = threadIdx.x + j * T;
#pragma unroll
    for (int e = 0; e < 4; ++e) wv[j][e] = c < chunks ? load_as_f32(w, wdt, int64_t{c} * 4 + e) : 0.f;
  }
  pdl_wait();
  pdl_launch_dependents();
  float4* xr = reinterpret_cast<float4*>(x + blockIdx.x * cols);
  TOut* yr = out + blockIdx.x * cols;
  float4 v[V];
  float ss = 0.f;
#pragma unroll
  for (int j = 0; j < V; ++j) {
    const int c = threadIdx.x + j * T;
    v[j] = make_float4(0.f, 0.f, 0.f, 0.f);
    if (c < chunks) {
      v[j] = xr[c];
      if (add != nullptr) {
        const float4 a = reinterpret_cast<const float4*>(add + blockIdx.x * cols)[c];
        v[j].x += a.x;
        v[j].y += a.y;
        v[j].z += a.z;
        v[j].w += a.w;
        xr[c] = v[j];
      }
    }
    ss = fmaf(v[j].x, v[j].x, ss);
    ss = fmaf(v[j].y, v[j].y, ss);
    ss = fmaf(v[j].z, v[j].z, ss);
    ss = fmaf(v[j].w, v[j].w, ss);
  }
  ss = warp_sum(ss);
  const int warps = (T + 31) / 32;
  if ((threadIdx.x & 31) == 0) warp_sums[threadIdx.x >> 5] = ss;
  __syncthreads();
  if (threadIdx.x < 32) {
    float t = static_cast<int>(threadIdx.x) < warps ? warp_sums[threadIdx.x] : 0.f;
    t = warp_sum(t);
    if (threadIdx.x == 0) inv_rms = 1.0f / sqrtf(t / static_cast<float>(cols) + eps);
  }
  __syncthreads();
  const float r = inv_rms;
#pragma unroll
  for (int j = 0; j < V; ++j) {
    const int c = threadIdx.x + j * T;
    if (c < chunks) {
      const float y[4] = {v[j].x * r * wv[j][0], v[j].y * r * wv[j][1], v[j].z * r * wv[j][2], v[j].w * r * wv[j][3]};
      store_f32(yr + int64_t{c} * 4, y);
    }
  }
}

template <typename TOut>
void norm_rows(float* x, const float* add, const void* w, DType wdt, float eps, int n, int64_t cols, TOut* out,
               cudaStream_t s) {
  if (n <= 0 || cols <= 0) return;
  const int64_t chunks = cols / 4;
  if (chunks <= 4096 && vector_rows(4, cols, {}, {x, out, add ? add : x}, 16)) {
    // Fewest float4s per thread that fit 1024 threads; threads a whole number of warps.
    const int v = chunks <= 1024 ? 1 : chunks <= 2048 ? 2 : 4;
    const unsigned threads = static_cast<unsigned>(((chunks + v - 1) / v + 31) / 32 * 32);
    switch (v) {
      case 1:
        launch_maybe_pdl(rmsnorm_reg_kernel<1, TOut>, dim3(n), dim3(threads), 0, s, x, add, w, wdt, eps, cols, out);
        break;
      case 2:
        launch_maybe_pdl(rmsnorm_reg_kernel<2, TOut>, dim3(n), dim3(threads), 0, s, x, add, w, wdt, eps, cols, out);
        break;
      default:
        launch_maybe_pdl(rmsnorm_reg_kernel<4, TOut>, dim3(n), dim3(threads), 0, s, x, add, w, wdt, eps, cols, out);
        break;
    }
    HI_CUDA_CHECK_LAUNCH("rmsnorm_reg_kernel");
    return;
  }
  launch_maybe_pdl(rmsnorm_kernel<TOut>, dim3(n), dim3(kBlock), 0, s, x, add, w, wdt, eps, cols, out);
  HI_CUDA_CHECK_LAUNCH("rmsnorm_kernel");
}

}  // namespace

void launch_add_rmsnorm(float* x, const float* add, const void* w, DType wdt, float eps, int n, int64_t cols,
                        float* out, cudaStream_t s) {
  norm_rows(x, add, w, wdt, eps, n, cols, out, s);
}

void launch_add_rmsnorm_16(float* x, const float* add, const void* w, DType wdt, float eps, int n, int64_t cols,
                           void* out, DType out_dt, cudaStream_t s) {
  if (out_dt == DType::BF16) {
    norm_rows(x, add, w, wdt, eps, n, cols, static_cast<__nv_bfloat16*>(out), s);
  } else {
    HI_CHECK(out_dt == DType::F16, "cuda rmsnorm: rows of " << dtype_name(out_dt) << ", expected BF16 or F16");
    norm_rows(x, add, w, wdt, eps, n, cols, static_cast<__half*>(out), s);
  }
}

void launch_rmsnorm(const float* x, const void* w, DType wdt, float eps, int n, int64_t cols, float* out,
                    cudaStream_t s) {
  // Without a residual the kernel never writes x.
  launch_add_rmsnorm(const_cast<float*>(x), nullptr, w, wdt, eps, n, cols, out, s);
}

}  // namespace headinfer::cuda
