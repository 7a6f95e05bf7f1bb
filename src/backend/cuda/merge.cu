// Merge of two partial attention results over disjoint keys by log-sum-exp, and the
// combine of split-KV partials. A side whose lse is -inf (all keys masked) has no
// weight and its values are never read into the result (they may be garbage).
#include <cmath>

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

// One warp per row; lanes own dims lane, lane + 32, ... (head_dim <= kSimtMaxHeadDim).
__global__ void __launch_bounds__(kWarps * 32)
    combine_kernel(const float* __restrict__ part_o, const float* __restrict__ part_lse, int n_slots, int n_rows,
                   int n_qh, int head_dim, float* __restrict__ out, int64_t out_stride, float* __restrict__ lse) {
  constexpr int kC = kSimtMaxHeadDim / 32;
  const int r = blockIdx.x * kWarps + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (r >= n_rows) return;
  float m = -INFINITY;
  for (int s = lane; s < n_slots; s += 32) m = fmaxf(m, part_lse[static_cast<int64_t>(s) * n_rows + r]);
  m = warp_max(m);
  float acc[kC];
#pragma unroll
  for (int c = 0; c < kC; ++c) acc[c] = 0.f;
  float wsum = 0.f;
  if (m != -INFINITY) {
    for (int s = 0; s < n_slots; ++s) {
      const float l = part_lse[static_cast<int64_t>(s) * n_rows + r];
      if (l == -INFINITY) continue;
      const float w = expf(l - m);
      wsum += w;
      const float* po = part_o + (static_cast<int64_t>(s) * n_rows + r) * head_dim;
#pragma unroll
      for (int c = 0; c < kC; ++c) {
        const int d = lane + 32 * c;
        if (d < head_dim) acc[c] = fmaf(w, po[d], acc[c]);
      }
    }
  }
  const int t = r / n_qh, h = r % n_qh;
  float* o = out + t * out_stride + static_cast<int64_t>(h) * head_dim;
  const float inv = wsum > 0.f ? 1.0f / wsum : 0.f;
#pragma unroll
  for (int c = 0; c < kC; ++c) {
    const int d = lane + 32 * c;
    if (d < head_dim) o[d] = acc[c] * inv;
  }
  if (lse && lane == 0) lse[r] = wsum > 0.f ? m + logf(wsum) : -INFINITY;
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

void launch_attention_combine(const float* part_o, const float* part_lse, int n_slots, int n_rows, int n_qh,
                              int head_dim, float* out, int64_t out_stride, float* lse, cudaStream_t s) {
  if (n_rows <= 0) return;
  HI_CHECK(head_dim <= kSimtMaxHeadDim, "cuda attention: head_dim " << head_dim << " exceeds " << kSimtMaxHeadDim);
  combine_kernel<<<(n_rows + kWarps - 1) / kWarps, kWarps * 32, 0, s>>>(part_o, part_lse, n_slots, n_rows, n_qh,
                                                                         head_dim, out, out_stride, lse);
  HI_CUDA_CHECK_LAUNCH("combine_kernel");
}

}  // namespace headinfer::cuda
