// add_rmsnorm at the end of the decode GEMV that produced its addend: the last block of
// the grid to finish adds the GEMV's output row to the residual and normalises it, so a
// layer boundary costs no launch of its own. The arithmetic is rmsnorm_reg_kernel's
// (norm.cu) step for step, that kernel's threads emulated by the block's warps, so the
// bits are those of matmul followed by add_rmsnorm.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backend/cuda/device_util.cuh"
#include "backend/cuda/kernels.hpp"

namespace headinfer::cuda {

// The register kernel's shape for a row of cols floats (cols % 4 == 0, cols / 4 <= 4096;
// the GEMV's tail takes cols / 4 <= 1024, one float4 per thread):
// float4s per thread and threads (a whole number of warps, at most 1024).
__host__ __device__ inline void rmsnorm_reg_shape(int64_t cols, int& v, int& threads) {
  const int64_t chunks = cols / 4;
  v = chunks <= 1024 ? 1 : chunks <= 2048 ? 2 : 4;
  threads = static_cast<int>(((chunks + v - 1) / v + 31) / 32 * 32);
}

// One row of at most 4096 floats (the register kernel's one float4 per thread): x +=
// add, out = x * rsqrt(mean(x^2) + eps) * w, summed as rmsnorm_reg_kernel sums with its
// `threads` threads: each warp of 32 of them reduces its float4s' squares by warp_sum,
// the warps' sums meet in one more warp_sum. Block warp w plays that kernel's warps w,
// w + kBlockWarps, ... (at most kTailVirtual of them), every load issued before any use:
// one round trip to memory.
constexpr int kTailVirtual = 4;

template <int kBlockWarps>
__device__ __forceinline__ void add_rmsnorm_row_emulated(const NormTail& n, const float* add) {
  static_assert(kBlockWarps * kTailVirtual >= 32, "the block's warps cover the norm kernel's 32 warps");
  __shared__ float warp_sums[32];
  __shared__ float inv_rms;
  int V = 1, T = 32;
  rmsnorm_reg_shape(n.cols, V, T);
  const int chunks = static_cast<int>(n.cols / 4), vwarps = T / 32;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  float4* xr = reinterpret_cast<float4*>(n.x);
  const float4* ar = reinterpret_cast<const float4*>(add);
  float4 v[kTailVirtual], wv[kTailVirtual];
#pragma unroll
  for (int k = 0; k < kTailVirtual; ++k) {
    const int c = (warp + k * kBlockWarps) * 32 + lane;
    v[k] = wv[k] = make_float4(0.f, 0.f, 0.f, 0.f);
    if (c < chunks) {
      const float4 xv = xr[c], a = __ldcg(ar + c);  // add: written by other blocks of this grid
      const int64_t e = int64_t{c} * 4;
      wv[k] = make_float4(load_as_f32(n.w, n.wdt, e), load_as_f32(n.w, n.wdt, e + 1), load_as_f32(n.w, n.wdt, e + 2),
                          load_as_f32(n.w, n.wdt, e + 3));
      v[k] = make_float4(xv.x + a.x, xv.y + a.y, xv.z + a.z, xv.w + a.w);
      xr[c] = v[k];
    }
  }
#pragma unroll
  for (int k = 0; k < kTailVirtual; ++k) {
    float ss = 0.f;
    ss = fmaf(v[k].x, v[k].x, ss);
    ss = fmaf(v[k].y, v[k].y, ss);
    ss = fmaf(v[k].z, v[k].z, ss);
    ss = fmaf(v[k].w, v[k].w, ss);
    ss = warp_sum(ss);
    const int vw = warp + k * kBlockWarps;
    if (lane == 0 && vw < vwarps) warp_sums[vw] = ss;
  }
  __syncthreads();
  if (threadIdx.x < 32) {
    float t = lane < vwarps ? warp_sums[lane] : 0.f;
    t = warp_sum(t);
    if (lane == 0) inv_rms = 1.0f / sqrtf(t / static_cast<float>(n.cols) + n.eps);
  }
  __syncthreads();
  const float r = inv_rms;
  float4* yr = reinterpret_cast<float4*>(n.out);
#pragma unroll
  for (int k = 0; k < kTailVirtual; ++k) {
    const int c = (warp + k * kBlockWarps) * 32 + lane;
    if (c < chunks)
      yr[c] = make_float4(v[k].x * r * wv[k].x, v[k].y * r * wv[k].y, v[k].z * r * wv[k].z, v[k].w * r * wv[k].w);
  }
}

// Every thread of every block calls it after the block's output rows are written: the
// grid's last block to get here runs the norm over the whole row `add`.
template <int kBlockWarps>
__device__ __forceinline__ void add_rmsnorm_last_block(const NormTail& n, const float* add) {
  __shared__ unsigned last;
  __threadfence();  // this block's rows are visible device-wide before it is counted
  __syncthreads();
  if (threadIdx.x == 0) {
    const unsigned total = gridDim.x * gridDim.y * gridDim.z;
    last = atomicAdd(n.counter, 1u) + 1u == total ? 1u : 0u;
    if (last) atomicExch(n.counter, 0u);  // every block arrived: ready for the next launch
  }
  __syncthreads();
  if (!last) return;
  __threadfence();
  pdl_wait();  // warps that had no rows never waited for the kernel before (x is its output)
  add_rmsnorm_row_emulated<kBlockWarps>(n, add);
}

}  // namespace headinfer::cuda
