// A warp's dot products of W rows with one row of x, as the decode GEMV computes them:
// lane l takes the 8-element chunks l, l + 32, ... of each row in that order, so the
// sums (and bits) do not depend on how many loads are in flight or how many rows a warp
// owns. Shared by the GEMV (gemv.cu) and the decode MLP kernel (decode_mlp.cu), whose
// results must be the GEMV's bit for bit.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "backend/cuda/device_util.cuh"

namespace headinfer::cuda {

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

// acc[j] = sum_k x[k] * row_j[k] over `chunks` 8-element chunks, reduced over the warp
// (every lane gets the sums). W is streamed (evict first); x is read as float4s from
// wherever it lives (shared memory in the MLP kernel).
template <typename T, int kUnroll, int RW>
__device__ __forceinline__ void warp_dot_rows(const uint4* const (&wr)[RW], int chunks, const float* x,
                                              float (&acc)[RW]) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int j = 0; j < RW; ++j) acc[j] = 0.f;
  int i = lane;
  for (; i + 32 * (kUnroll - 1) < chunks; i += 32 * kUnroll) {
    uint4 wv[kUnroll][RW];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
#pragma unroll
      for (int j = 0; j < RW; ++j) wv[u][j] = __ldcs(wr[j] + i + 32 * u);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const float4* xp = reinterpret_cast<const float4*>(x + static_cast<int64_t>(i + 32 * u) * 8);
      const float4 a = xp[0], b = xp[1];
      const float xf[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
      for (int j = 0; j < RW; ++j) {
        float wf[8];
        unpack8(wv[u][j], static_cast<T*>(nullptr), wf);
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[j] = fmaf(xf[e], wf[e], acc[j]);
      }
    }
  }
  for (; i < chunks; i += 32) {
    const float4* xp = reinterpret_cast<const float4*>(x + static_cast<int64_t>(i) * 8);
    const float4 a = xp[0], b = xp[1];
    const float xf[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
    for (int j = 0; j < RW; ++j) {
      float wf[8];
      unpack8(__ldcs(wr[j] + i), static_cast<T*>(nullptr), wf);
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[j] = fmaf(xf[e], wf[e], acc[j]);
    }
  }
#pragma unroll
  for (int j = 0; j < RW; ++j) acc[j] = warp_sum(acc[j]);
}

}  // namespace headinfer::cuda
