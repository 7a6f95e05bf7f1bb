// The GEMV's per-warp dot products, shared by every kernel that streams W rows this
// way (gemv.cu, the paired-row GEMVs of gemv_pairs.cu), so a row's sum has the same
// bits whichever kernel computes it: lane l takes the 8-element chunks l, l + 32, ... of
// every row in that order, whatever kUnroll and RW are, then the warp adds its lanes.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "backend/cuda/device_util.cuh"

namespace headinfer::cuda {

constexpr int kGemvLine = 128;  // bytes of an L2 line

// Lines of each of R rows of C elements of T to prefetch within `bytes` in all (at most
// whole rows): what a GEMV's blocks ask L2 for before their grid dependency wait.
template <typename T>
int gemv_prefetch_lines(int64_t R, int C, int64_t bytes) {
  const int64_t row_lines = (static_cast<int64_t>(C) * static_cast<int64_t>(sizeof(T)) + kGemvLine - 1) / kGemvLine;
  const int64_t lines = bytes / (R * kGemvLine);
  return static_cast<int>(lines < row_lines ? lines : row_lines);
}

// Eight consecutive BF16 / F16 values (a 16-byte load) as floats; element 2i is the
// low half of word i (little endian).
__device__ __forceinline__ void unpack8(const uint4& v, __nv_bfloat16*, float* f) {
  const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = __uint_as_float(w[i] << 16);
    f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
  }
}
__device__ __forceinline__ void unpack8(const uint4& v, __half*, float* f) {
  const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 p = __half22float2(*reinterpret_cast<const __half2*>(&w[i]));
    f[2 * i] = p.x;
    f[2 * i + 1] = p.y;
  }
}

// W does not depend on the kernel before a GEMV: under programmatic launch its blocks ask
// L2 for the first prefetch_lines lines of each of their rows while that kernel runs,
// then wait for it (for x), then let the kernel after them launch.
template <int RW>
__device__ __forceinline__ void gemv_prefetch_then_wait(const uint4* const (&wr)[RW], int prefetch_lines, int lane) {
#pragma unroll
  for (int j = 0; j < RW; ++j)
    for (int l = lane; l < prefetch_lines; l += 32) prefetch_l2(reinterpret_cast<const char*>(wr[j]) + l * kGemvLine);
  pdl_wait();
  pdl_launch_dependents();
}

// acc[t][j] += x[t * x_stride + k + e] * wf[j][e] for e = 0..7, in that order: one
// 16-byte W chunk per row (unpacked to wf) against the 8 x values at k of every token.
template <int N, int RW>
__device__ __forceinline__ void gemv_fma_chunk(const float (&wf)[RW][8], const float* __restrict__ x,
                                               int64_t x_stride, int64_t k, float (&acc)[N][RW]) {
#pragma unroll
  for (int t = 0; t < N; ++t) {
    const float4* xp = reinterpret_cast<const float4*>(x + t * x_stride + k);
    const float4 a = __ldg(xp), b = __ldg(xp + 1);
    const float xf[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
    for (int j = 0; j < RW; ++j)
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[t][j] = fmaf(xf[e], wf[j][e], acc[t][j]);
  }
}

// acc[t][j] = sum_k x[t * x_stride + k] * row_j[k] over `chunks` 16-byte chunks of the
// RW rows at wr, in every lane of the warp. W is read once (evict first), x through the
// read-only cache. kUnroll: 16-byte loads per row in flight per lane and step.
template <typename T, int N, int kUnroll, int RW>
__device__ __forceinline__ void gemv_warp_dot(const uint4* const (&wr)[RW], int chunks, const float* __restrict__ x,
                                              int64_t x_stride, int lane, float (&acc)[N][RW]) {
#pragma unroll
  for (int t = 0; t < N; ++t)
#pragma unroll
    for (int j = 0; j < RW; ++j) acc[t][j] = 0.f;
  int i = lane;
  // Main loop: kUnroll chunks per row loaded before any is used (bytes in flight).
  for (; i + 32 * (kUnroll - 1) < chunks; i += 32 * kUnroll) {
    uint4 wv[kUnroll][RW];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
#pragma unroll
      for (int j = 0; j < RW; ++j) wv[u][j] = __ldcs(wr[j] + i + 32 * u);  // streamed once: evict first
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t k = static_cast<int64_t>(i + 32 * u) * 8;
      float wf[RW][8];
#pragma unroll
      for (int j = 0; j < RW; ++j) unpack8(wv[u][j], static_cast<T*>(nullptr), wf[j]);
      gemv_fma_chunk<N, RW>(wf, x, x_stride, k, acc);
    }
  }
  // Remaining chunks of this lane, one at a time.
  for (; i < chunks; i += 32) {
    const int64_t k = static_cast<int64_t>(i) * 8;
    float wf[RW][8];
#pragma unroll
    for (int j = 0; j < RW; ++j) unpack8(__ldcs(wr[j] + i), static_cast<T*>(nullptr), wf[j]);
    gemv_fma_chunk<N, RW>(wf, x, x_stride, k, acc);
  }
#pragma unroll
  for (int t = 0; t < N; ++t)
#pragma unroll
    for (int j = 0; j < RW; ++j) acc[t][j] = warp_sum(acc[t][j]);
}

}  // namespace headinfer::cuda
