// The k largest logits of a row on the device (sampling with top-k): one block finds
// the k-th largest value by a radix select over order-preserving 32-bit keys (three
// passes of 11, 11 and 10 bits, each a histogram in shared memory and a scan over its
// bins from the top), then gathers every value above it and, of those equal to it, the
// ones with the smallest indices, in index order. The k pairs leave unsorted; the host
// sorts those few. Ties and order match the host's (value desc, index asc): -0 counts as
// +0, NaN as the smallest value.
#include <cstdint>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/device_util.cuh"
#include "backend/cuda/kernels.hpp"

namespace headinfer::cuda {
namespace {

constexpr int kBlock = 1024;
constexpr int kBins = 2048;

// Larger float, larger key; -0 and +0 one key; NaN below everything.
__device__ __forceinline__ uint32_t order_key(float f) {
  if (f != f) return 0u;
  if (f == 0.f) f = 0.f;
  const uint32_t u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// Inclusive scan of one value per thread over the block; `warp_sums` holds kBlock / 32.
__device__ __forceinline__ uint32_t block_inclusive_scan(uint32_t v, uint32_t* warp_sums) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int o = 1; o < 32; o <<= 1) {
    const uint32_t t = __shfl_up_sync(0xffffffffu, v, o);
    if (lane >= o) v += t;
  }
  if (lane == 31) warp_sums[warp] = v;
  __syncthreads();
  if (warp == 0) {
    uint32_t w = warp_sums[lane];
    for (int o = 1; o < 32; o <<= 1) {
      const uint32_t t = __shfl_up_sync(0xffffffffu, w, o);
      if (lane >= o) w += t;
    }
    warp_sums[lane] = w;
  }
  __syncthreads();
  const uint32_t r = v + (warp > 0 ? warp_sums[warp - 1] : 0u);
  __syncthreads();  // warp_sums is reused by the next scan
  return r;
}

__global__ void __launch_bounds__(kBlock) top_k_kernel(const float* __restrict__ x, int64_t n, int k,
                                                       float* __restrict__ out_v, int32_t* __restrict__ out_i) {
  __shared__ uint32_t hist[kBins];
  __shared__ uint32_t warp_sums[kBlock / 32];
  __shared__ uint32_t s_prefix, s_remaining, s_count;
  pdl_wait();
  pdl_launch_dependents();
  if (threadIdx.x == 0) {
    s_prefix = 0;
    s_remaining = static_cast<uint32_t>(k);
  }
  uint32_t mask = 0;
  // Three passes: bits 31..21, 20..10, 9..0 of the key.
  for (int pass = 0; pass < 3; ++pass) {
    const int shift = pass == 0 ? 21 : pass == 1 ? 10 : 0;
    const int bits = pass == 2 ? 10 : 11;
    const uint32_t bmask = (1u << bits) - 1u;
    for (int b = threadIdx.x; b < kBins; b += kBlock) hist[b] = 0;
    __syncthreads();
    const uint32_t prefix = s_prefix;
    for (int64_t i = threadIdx.x; i < n; i += kBlock) {
      const uint32_t key = order_key(x[i]);
      if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & bmask], 1u);
    }
    __syncthreads();
    // Bins from the top: thread t owns bins kBins-1-2t and kBins-2-2t.
    const int hi = kBins - 1 - 2 * threadIdx.x;
    const uint32_t c_hi = hist[hi], c_lo = hist[hi - 1];
    const uint32_t incl = block_inclusive_scan(c_hi + c_lo, warp_sums);
    const uint32_t before = incl - c_hi - c_lo;  // keys in higher bins than this thread's
    const uint32_t need = s_remaining;
    __syncthreads();  // everyone read s_remaining before it changes
    if (before < need && need <= incl) {  // the k-th largest lies in one of this thread's bins
      int bin;
      uint32_t above;
      if (before + c_hi >= need) {
        bin = hi;
        above = before;
      } else {
        bin = hi - 1;
        above = before + c_hi;
      }
      s_prefix = prefix | (static_cast<uint32_t>(bin) << shift);
      s_remaining = need - above;
    }
    mask |= bmask << shift;
    __syncthreads();
  }
  const uint32_t kth = s_prefix;      // the k-th largest key
  const uint32_t ties = s_remaining;  // how many keys equal to it are taken
  const uint32_t above = static_cast<uint32_t>(k) - ties;
  if (threadIdx.x == 0) s_count = 0;
  __syncthreads();
  for (int64_t i = threadIdx.x; i < n; i += kBlock) {
    const float v = x[i];
    if (order_key(v) > kth) {
      const uint32_t slot = atomicAdd(&s_count, 1u);
      out_v[slot] = v;
      out_i[slot] = static_cast<int32_t>(i);
    }
  }
  // Equal keys in index order: a block-wide scan of the flags of each 1024-wide stretch.
  uint32_t taken = 0;
  for (int64_t base = 0; base < n && taken < ties; base += kBlock) {
    const int64_t i = base + threadIdx.x;
    const float v = i < n ? x[i] : 0.f;
    const uint32_t flag = i < n && order_key(v) == kth;
    const uint32_t incl = block_inclusive_scan(flag, warp_sums);
    const uint32_t rank = taken + incl - flag;
    if (flag && rank < ties) {
      out_v[above + rank] = v;
      out_i[above + rank] = static_cast<int32_t>(i);
    }
    taken += warp_sums[kBlock / 32 - 1];  // the stretch's count (read before the barrier)
    __syncthreads();
  }
}

}  // namespace

void launch_top_k(const float* x, int64_t n, int k, float* out_v, int32_t* out_i, cudaStream_t s) {
  launch_maybe_pdl(top_k_kernel, dim3(1), dim3(kBlock), 0, s, x, n, k, out_v, out_i);
  HI_CUDA_CHECK_LAUNCH("top_k_kernel");
}

}  // namespace headinfer::cuda
