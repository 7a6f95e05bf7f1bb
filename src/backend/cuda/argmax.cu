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

__global__ void __launch_bounds__(kBlock) argmax_kernel(const float* __restrict__ x, int64_t n, int32_t* out) {
  __shared__ float best_v[kBlock / 32];
  __shared__ int64_t best_i[kBlock / 32];
  pdl_wait();
  pdl_launch_dependents();
  float v = -INFINITY;
  int64_t idx = LLONG_MAX;
  for (int64_t i = threadIdx.x; i < n; i += kBlock) {
    const float e = x[i];
    if (e > v || (idx == LLONG_MAX && e == v)) {  // the first -inf counts too: an all -inf row gives 0
      v = e;
      idx = i;
    }
  }
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
  launch_maybe_pdl(argmax_kernel, dim3(1), dim3(kBlock), 0, s, x, n, out);
  HI_CUDA_CHECK_LAUNCH("argmax_kernel");
}

}  // namespace headinfer::cuda
