// Merge of two partial attention results over disjoint keys by log-sum-exp, and the
// combine of split-KV partials. A side whose lse is -inf (all keys masked) has no
// weight and its values are never read into the result (they may be garbage).
#include <climits>
#include <cmath>

#include "backend/cuda/combine_slots.cuh"
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/device_util.cuh"
#include "backend/cuda/kernels.hpp"

namespace headinfer::cuda {
namespace {

constexpr int kWarps = 4;

// One warp per (token, head) row.
__global__ void __launch_bounds__(kWarps * 32)
    merge_kernel(float* o_a, float* lse_a, const float* o_b, const float* lse_b, int n_rows, int n_qh,
                 int head_dim, int64_t stride_a, int64_t stride_b) {
  const int r = blockIdx.x * kWarps + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (r >= n_rows) return;
  const int t = r / n_qh, h = r % n_qh;
  float* oa = o_a + t * stride_a + static_cast<int64_t>(h) * head_dim;
  const float* ob = o_b + t * stride_b + static_cast<int64_t>(h) * head_dim;
  const float la = lse_a[r], lb = lse_b[r];
  if (lb == -INFINITY) return;  // b adds nothing (also when both are -inf)
  if (la == -INFINITY) {
    for (int d = lane; d < head_dim; d += 32) oa[d] = ob[d];
    __syncwarp();
    if (lane == 0) lse_a[r] = lb;
    return;
  }
  const float m = fmaxf(la, lb);
  const float wa = expf(la - m), wb = expf(lb - m);
  const float inv = 1.0f / (wa + wb);
  for (int d = lane; d < head_dim; d += 32) oa[d] = (oa[d] * wa + ob[d] * wb) * inv;
  __syncwarp();
  if (lane == 0) lse_a[r] = m + logf(wa + wb);
}

// Combine of split partials: a thread per output value, each evaluating
// combine_slot_value over the slots (the decode kernels' own combine does the same).
constexpr int kCombineThreads = 128;

__global__ void __launch_bounds__(kCombineThreads)
    combine_kernel(const SlotPartials c, float* __restrict__ out, int64_t out_stride, float* __restrict__ lse) {
  pdl_wait();  // launched as a programmatic dependent of the attention kernel
  pdl_launch_dependents();
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kCombineThreads + threadIdx.x;
  if (i >= static_cast<int64_t>(c.n_rows) * c.head_dim) return;
  const int r = static_cast<int>(i / c.head_dim), d = static_cast<int>(i % c.head_dim);
  const int t = r / c.n_qh, h = r % c.n_qh;
  const int64_t row = t * c.o_tok_stride + static_cast<int64_t>(h) * c.head_dim + d;
  float l;
  const float v = combine_slot_value(
      c.n_slots, [&](int s) { return c.lse[s * c.lse_slot_stride + r]; },
      [&](int s) { return c.o[s * c.o_slot_stride + row]; }, l);
  out[t * out_stride + static_cast<int64_t>(h) * c.head_dim + d] = v;
  if (lse && d == 0) lse[r] = l;
}

}  // namespace

void launch_merge_attention(float* o_a, float* lse_a, const float* o_b, const float* lse_b, int n_q, int n_qh,
                            int head_dim, int64_t stride_a, int64_t stride_b, cudaStream_t s) {
  const int n_rows = n_q * n_qh;
  if (n_rows <= 0 || head_dim <= 0) return;
  merge_kernel<<<(n_rows + kWarps - 1) / kWarps, kWarps * 32, 0, s>>>(o_a, lse_a, o_b, lse_b, n_rows, n_qh,
                                                                       head_dim, stride_a, stride_b);
  HI_CUDA_CHECK_LAUNCH("merge_kernel");
}

void launch_attention_combine(const SlotPartials& part, float* out, int64_t out_stride, float* lse, cudaStream_t s) {
  if (part.n_rows <= 0 || part.n_slots <= 0) return;
  const int64_t n = static_cast<int64_t>(part.n_rows) * part.head_dim;
  HI_CHECK(n / kCombineThreads < INT_MAX, "cuda attention: " << part.n_rows << " rows to combine are too many");
  const dim3 grid(static_cast<unsigned>((n + kCombineThreads - 1) / kCombineThreads));
  launch_maybe_pdl(combine_kernel, grid, dim3(kCombineThreads), 0, s, part, out, out_stride, lse);
  HI_CUDA_CHECK_LAUNCH("combine_kernel");
}

}  // namespace headinfer::cuda
