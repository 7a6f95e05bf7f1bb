// Argmax of a logits row on the device (greedy decoding): one block scans the row,
// each thread a strided slice keeping its first maximum, then a tree over the block
// keeps the larger value and, on ties, the smaller index, so the result is the first
// maximum as torch.argmax and the host scan give. NaN never wins a comparison.
#include <climits>
#include <cmath>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/device_util.cuh"
#include "backend/cuda/kernels.hpp"

namespace headinfer::cuda {
namespace {

constexpr int kBlock = 1024;

// The warp's best (value, index) in every lane: the larger value, on equal values the
// smaller index.
__device__ __forceinline__ void warp_argmax(float& v, int64_t& idx) {
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, v, o);
    const int64_t oi = __shfl_xor_sync(0xffffffffu, idx, o);
    if (ov > v || (ov == v && oi < idx)) {
      v = ov;
      idx = oi;
    }
  }
}

// Folds element i into the thread's running best; a thread sees its elements in
// increasing index order, so a strict > keeps the first maximum.
__device__ __forceinline__ void take(float e, int64_t i, float& v, int64_t& idx) {
  if (e > v || (idx == LLONG_MAX && e == v)) {  // the first -inf counts too: an all -inf row gives 0
    v = e;
    idx = i;
  }
}

// The first n4 * 4 values as float4s, kUnroll loads in flight per thread (one load at
// a time left a 128K-vocabulary scan waiting on L2 latency: 13-14 us of a decode step),
// then the tail one by one.
__global__ void __launch_bounds__(kBlock)
    argmax_kernel(const float* __restrict__ x, int64_t n, int64_t n4, int32_t* out) {
  constexpr int kUnroll = 8;
  __shared__ float best_v[kBlock / 32];
  __shared__ int64_t best_i[kBlock / 32];
  pdl_wait();
  pdl_launch_dependents();
  float v = -INFINITY;
  int64_t idx = LLONG_MAX;
  const float4* x4 = reinterpret_cast<const float4*>(x);
  for (int64_t base = threadIdx.x; base < n4; base += int64_t{kBlock} * kUnroll) {
    float4 c[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t i = base + int64_t{u} * kBlock;
      if (i < n4) c[u] = x4[i];
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t i = base + int64_t{u} * kBlock;
      if (i < n4) {
        take(c[u].x, 4 * i, v, idx);
        take(c[u].y, 4 * i + 1, v, idx);
        take(c[u].z, 4 * i + 2, v, idx);
        take(c[u].w, 4 * i + 3, v, idx);
      }
    }
  }
  for (int64_t i = 4 * n4 + threadIdx.x; i < n; i += kBlock) take(x[i], i, v, idx);
  warp_argmax(v, idx);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (lane == 0) {
    best_v[warp] = v;
    best_i[warp] = idx;
  }
  __syncthreads();
  if (warp == 0) {
    v = lane < kBlock / 32 ? best_v[lane] : -INFINITY;
    idx = lane < kBlock / 32 ? best_i[lane] : LLONG_MAX;
    warp_argmax(v, idx);
    if (lane == 0) *out = idx == LLONG_MAX ? 0 : static_cast<int32_t>(idx);
  }
}

}  // namespace

void launch_argmax(const float* x, int64_t n, int32_t* out, cudaStream_t s) {
  const int64_t n4 = aligned_to(x, 16) ? n / 4 : 0;
  launch_maybe_pdl(argmax_kernel, dim3(1), dim3(kBlock), 0, s, x, n, n4, out);
  HI_CUDA_CHECK_LAUNCH("argmax_kernel");
}

}  // namespace headinfer::cuda
