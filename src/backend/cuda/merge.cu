// Merge of two partial attention results over disjoint keys by log-sum-exp, and the
// combine of split-KV partials. A side whose lse is -inf (all keys masked) has no
// weight and its values are never read into the result (they may be garbage).
#include <cmath>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/device_util.cuh"
#include "backend/cuda/kernels.hpp"
#include "backend/cuda/lse_merge.cuh"

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
  const LseMerge w = lse_merge(lse_a[r], lse_b[r], /*a_empty=*/false);
  if (w.keep_a) return;
  for (int d = lane; d < head_dim; d += 32) oa[d] = w.value(w.take_b ? 0.f : oa[d], ob[d]);
  __syncwarp();
  if (lane == 0) lse_a[r] = w.lse;
}

// Combine of many rows (prefill calls split over keys): one warp per row, lane l owning
// columns [l * E, l * E + E). (A block per (row, 32 columns), as decode once had, took
// as long as the attention kernel it followed for 2 slots x 32768 rows: 0.5 ms.)
template <int E>
__global__ void __launch_bounds__(kWarps * 32)
    combine_rows_kernel(const float* __restrict__ part_o, const float* __restrict__ part_lse, int n_slots, int n_rows,
                        int n_qh, int head_dim, float* __restrict__ out, int64_t out_stride, float* __restrict__ lse) {
  pdl_wait();
  pdl_launch_dependents();
  const int r = blockIdx.x * kWarps + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (r >= n_rows) return;
  float m = -INFINITY;
  for (int s = 0; s < n_slots; ++s) m = fmaxf(m, part_lse[static_cast<int64_t>(s) * n_rows + r]);
  float sum = 0.f;
  if (m != -INFINITY)
    for (int s = 0; s < n_slots; ++s) {
      const float l = part_lse[static_cast<int64_t>(s) * n_rows + r];
      sum += l == -INFINITY ? 0.f : expf(l - m);
    }
  const bool any = m != -INFINITY && sum > 0.f;
  const float inv = any ? 1.0f / sum : 0.f;
  float* orow = out + (r / n_qh) * out_stride + static_cast<int64_t>(r % n_qh) * head_dim;
  for (int d = lane * E; d < head_dim; d += 32 * E) {
    float acc[E];
#pragma unroll
    for (int e = 0; e < E; ++e) acc[e] = 0.f;
    for (int s = 0; any && s < n_slots; ++s) {
      const float l = part_lse[static_cast<int64_t>(s) * n_rows + r];
      if (l == -INFINITY) continue;  // an empty slot's values are never read
      const float w = expf(l - m);
      float v[E];
      load_f32(part_o + (static_cast<int64_t>(s) * n_rows + r) * head_dim + d, v);
#pragma unroll
      for (int e = 0; e < E; ++e) acc[e] = fmaf(w, v[e], acc[e]);
    }
#pragma unroll
    for (int e = 0; e < E; ++e) acc[e] *= inv;
    store_f32(orow + d, acc);
  }
  if (lse && lane == 0) lse[r] = any ? m + logf(sum) : -INFINITY;
}

// Combine of few rows (decode), latency-bound: warps of 64 columns (lane l owning
// columns 2l, 2l + 1 of its warp's 64), head_dim / 64 warps a row, each warp on its own.
// Every load of up to kWarpSlots slots is issued before any is used (the lse of slots l
// and l + 32 by lane l, shared by shuffles), so 64 slots cost one memory latency and no
// barrier; more slots take further rounds with a running max. Against a block per
// (row, 8 columns) with three barriers: decode 4.81 -> 4.72, 5.77 -> 5.68, 8.88 -> 8.80
// ms/token at 4K / 32K / 128K (H200).
constexpr int kWarpSlots = 64;

__global__ void __launch_bounds__(kWarps * 32)
    combine_warps_kernel(const float* __restrict__ part_o, const float* __restrict__ part_lse, int n_slots,
                         int n_rows, int n_qh, int head_dim, float* __restrict__ out, int64_t out_stride,
                         float* __restrict__ lse) {
  pdl_wait();
  pdl_launch_dependents();
  const int warps_per_row = (head_dim + 63) / 64;
  const int w = blockIdx.x * kWarps + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  const int r = w / warps_per_row;
  if (r >= n_rows) return;
  const int d = (w % warps_per_row) * 64 + 2 * lane;
  const bool dim_ok = d < head_dim;
  float m = -INFINITY, sum = 0.f, acc0 = 0.f, acc1 = 0.f;
  for (int s0 = 0; s0 < n_slots; s0 += kWarpSlots) {
    const int sa = s0 + lane, sb = s0 + 32 + lane;
    const float la = sa < n_slots ? part_lse[static_cast<int64_t>(sa) * n_rows + r] : -INFINITY;
    const float lb = sb < n_slots ? part_lse[static_cast<int64_t>(sb) * n_rows + r] : -INFINITY;
    float2 o[kWarpSlots];
#pragma unroll
    for (int j = 0; j < kWarpSlots; ++j) {
      const int sj = s0 + j;
      o[j] = sj < n_slots && dim_ok
                 ? *reinterpret_cast<const float2*>(part_o + (static_cast<int64_t>(sj) * n_rows + r) * head_dim + d)
                 : make_float2(0.f, 0.f);
    }
    float cm = fmaxf(la, lb);
    for (int off = 16; off > 0; off >>= 1) cm = fmaxf(cm, __shfl_xor_sync(0xffffffffu, cm, off));
    cm = fmaxf(cm, m);
    if (cm == -INFINITY) continue;  // every slot so far empty
    // Weights relative to the new maximum; what came before is rescaled to it.
    const float wa = la == -INFINITY ? 0.f : expf(la - cm), wb = lb == -INFINITY ? 0.f : expf(lb - cm);
    float ws = wa + wb;
    for (int off = 16; off > 0; off >>= 1) ws += __shfl_xor_sync(0xffffffffu, ws, off);
    const float rescale = m == -INFINITY ? 0.f : expf(m - cm);
    sum = sum * rescale + ws;
    acc0 *= rescale;
    acc1 *= rescale;
#pragma unroll
    for (int j = 0; j < kWarpSlots; ++j) {
      const float wj = __shfl_sync(0xffffffffu, j < 32 ? wa : wb, j & 31);
      if (wj != 0.f) {  // an empty slot's values are never read into the result
        acc0 = fmaf(wj, o[j].x, acc0);
        acc1 = fmaf(wj, o[j].y, acc1);
      }
    }
    m = cm;
  }
  const bool any = m != -INFINITY && sum > 0.f;
  const float inv = any ? 1.0f / sum : 0.f;
  if (dim_ok) {
    float* orow = out + (r / n_qh) * out_stride + static_cast<int64_t>(r % n_qh) * head_dim;
    *reinterpret_cast<float2*>(orow + d) = make_float2(acc0 * inv, acc1 * inv);
  }
  if (lse && lane == 0 && d == 0) lse[r] = any ? m + logf(sum) : -INFINITY;
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
  // Few rows (decode): warps of 64 columns; many rows (prefill splits), or rows whose
  // column pairs are not 8-byte aligned: a warp per row.
  // part_o's rows are head_dim apart.
  if (n_rows <= 64 && vector_rows(2, head_dim, {out_stride}, {out, part_o}, 8)) {
    const int warps = n_rows * ((head_dim + 63) / 64);
    launch_maybe_pdl(combine_warps_kernel, dim3((warps + kWarps - 1) / kWarps), dim3(kWarps * 32), 0, s, part_o,
                     part_lse, n_slots, n_rows, n_qh, head_dim, out, out_stride, lse);
  } else {
    const bool vec = vector_rows(4, head_dim, {out_stride}, {out, part_o}, 16);
    const dim3 grid((n_rows + kWarps - 1) / kWarps);
    launch_maybe_pdl(vec ? combine_rows_kernel<4> : combine_rows_kernel<1>, grid, dim3(kWarps * 32), 0, s, part_o,
                     part_lse, n_slots, n_rows, n_qh, head_dim, out, out_stride, lse);
  }
  HI_CUDA_CHECK_LAUNCH("combine_kernel");
}

}  // namespace headinfer::cuda
