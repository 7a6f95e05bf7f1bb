// RMSNorm: one block per row; the sum of squares is reduced in f32 over a tree
// (per-thread partial sums, then warps, then the block). With a residual to add
// first, the sum is written back to x in the same pass (the layer boundary).
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/device_util.cuh"
#include "backend/cuda/kernels.hpp"

namespace headinfer::cuda {
namespace {

constexpr int kBlock = 256;

__global__ void __launch_bounds__(kBlock) rmsnorm_kernel(float* x, const float* add, const void* __restrict__ w,
                                                         DType wdt, float eps, int64_t cols, float* out) {
  __shared__ float warp_sums[kBlock / 32];
  __shared__ float inv_rms;
  pdl_wait();
  pdl_launch_dependents();
  float* xr = x + blockIdx.x * cols;
  float* yr = out + blockIdx.x * cols;
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
  for (int64_t i = threadIdx.x; i < cols; i += kBlock) yr[i] = xr[i] * r * load_as_f32(w, wdt, i);
}

}  // namespace

void launch_add_rmsnorm(float* x, const float* add, const void* w, DType wdt, float eps, int n, int64_t cols, float* out,
                        cudaStream_t s) {
  if (n <= 0 || cols <= 0) return;
  launch_maybe_pdl(rmsnorm_kernel, dim3(n), dim3(kBlock), 0, s, x, add, w, wdt, eps, cols, out);
  HI_CUDA_CHECK_LAUNCH("rmsnorm_kernel");
}

void launch_rmsnorm(const float* x, const void* w, DType wdt, float eps, int n, int64_t cols, float* out,
                    cudaStream_t s) {
  // Without a residual the kernel never writes x.
  launch_add_rmsnorm(const_cast<float*>(x), nullptr, w, wdt, eps, n, cols, out, s);
}

}  // namespace headinfer::cuda
