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

// Combine of split partials, latency-bound (a few microseconds matter per decode
// step): block (row r, chunk of kCd dims); kGroups groups of threads take slots
// g, g + kGroups, ... Every thread first issues the loads of its first kPre slots
// (outputs and lse), then the block reduces (max, sum of weights) over all slots' lse
// with a running max, so one memory latency covers most of the work; the groups' sums
// meet in shared memory.
constexpr int kCombineThreads = 256;
constexpr int kPre = 4;
constexpr int kCd = 8;  // dims a block
constexpr int kV = 4;   // dims a thread (one float4)

__device__ __forceinline__ void online_pair(float& m, float& s, float m2, float s2) {
  const float mn = fmaxf(m, m2);
  if (mn == -INFINITY) return;  // both empty
  s = s * expf(m - mn) + s2 * expf(m2 - mn);
  m = mn;
}

__global__ void __launch_bounds__(kCombineThreads)
    combine_kernel(const float* __restrict__ part_o, const float* __restrict__ part_lse, int n_slots, int n_rows,
                   int n_qh, int head_dim, float* __restrict__ out, int64_t out_stride, float* __restrict__ lse) {
  constexpr int kTps = kCd / kV;                   // threads per slot
  constexpr int kGroups = kCombineThreads / kTps;  // slots in parallel
  constexpr int kParts = kCombineThreads / kCd;
  __shared__ float red_m[kCombineThreads / 32], red_s[kCombineThreads / 32];
  __shared__ float acc_s[kGroups][kCd];
  __shared__ float part_s[kParts][kCd];
  pdl_wait();  // launched as a programmatic dependent of the attention kernel
  pdl_launch_dependents();
  const int r = blockIdx.x;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int g = tid / kTps, c = (tid % kTps) * kV;
  const int d = blockIdx.y * kCd + c;
  const bool dim_ok = d < head_dim;

  // Outputs and lse of this thread's first kPre slots, in flight during the reduction.
  float pre_o[kPre][kV], pre_l[kPre];
#pragma unroll
  for (int i = 0; i < kPre; ++i) {
    const int s = g + i * kGroups;
    pre_l[i] = -INFINITY;
#pragma unroll
    for (int e = 0; e < kV; ++e) pre_o[i][e] = 0.f;
    if (s < n_slots) {
      pre_l[i] = part_lse[static_cast<int64_t>(s) * n_rows + r];
      if (dim_ok) {
        const float* po = part_o + (static_cast<int64_t>(s) * n_rows + r) * head_dim + d;
        const float4 v = *reinterpret_cast<const float4*>(po);
        pre_o[i][0] = v.x;
        pre_o[i][1] = v.y;
        pre_o[i][2] = v.z;
        pre_o[i][3] = v.w;
      }
    }
  }

  float m = -INFINITY, sum = 0.f;
  for (int s = tid; s < n_slots; s += kCombineThreads)
    online_pair(m, sum, part_lse[static_cast<int64_t>(s) * n_rows + r], 1.f);
  for (int off = 16; off > 0; off >>= 1) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, off), s2 = __shfl_xor_sync(0xffffffffu, sum, off);
    online_pair(m, sum, m2, s2);
  }
  if (lane == 0) {
    red_m[warp] = m;
    red_s[warp] = sum;
  }
  __syncthreads();
  m = red_m[0];
  sum = red_s[0];
  for (int w = 1; w < kCombineThreads / 32; ++w) online_pair(m, sum, red_m[w], red_s[w]);

  float acc[kV];
#pragma unroll
  for (int e = 0; e < kV; ++e) acc[e] = 0.f;
  if (m != -INFINITY) {
#pragma unroll
    for (int i = 0; i < kPre; ++i) {
      const float w = pre_l[i] == -INFINITY ? 0.f : expf(pre_l[i] - m);
#pragma unroll
      for (int e = 0; e < kV; ++e) acc[e] = fmaf(w, pre_o[i][e], acc[e]);
    }
    if (dim_ok) {
      for (int s = g + kPre * kGroups; s < n_slots; s += kGroups) {
        const float l = part_lse[static_cast<int64_t>(s) * n_rows + r];
        const float w = l == -INFINITY ? 0.f : expf(l - m);
        const float* po = part_o + (static_cast<int64_t>(s) * n_rows + r) * head_dim + d;
#pragma unroll
        for (int e = 0; e < kV; ++e) acc[e] = fmaf(w, po[e], acc[e]);
      }
    }
  }
#pragma unroll
  for (int e = 0; e < kV; ++e) acc_s[g][c + e] = acc[e];
  __syncthreads();
  {
    const int cc = tid % kCd, part = tid / kCd;
    float t = 0.f;
    for (int k = part; k < kGroups; k += kParts) t += acc_s[k][cc];
    part_s[part][cc] = t;
  }
  __syncthreads();
  if (tid < kCd) {
    const int dd = blockIdx.y * kCd + tid;
    float tot = 0.f;
#pragma unroll 8
    for (int k = 0; k < kParts; ++k) tot += part_s[k][tid];
    const int t = r / n_qh, h = r % n_qh;
    const bool any = m != -INFINITY && sum > 0.f;
    if (dd < head_dim) out[t * out_stride + static_cast<int64_t>(h) * head_dim + dd] = any ? tot / sum : 0.f;
    if (lse && blockIdx.y == 0 && tid == 0) lse[r] = any ? m + logf(sum) : -INFINITY;
  }
}

// Combine of many rows (prefill calls split over keys): one warp per row, lane l owning
// columns [l * E, l * E + E). The block-per-(row, dims) kernel above spends its block
// launches and barriers on a few slots per row; for tens of thousands of rows that
// took as long as the attention kernel it followed (2 slots x 32768 rows: 0.5 ms).
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
  // Few rows (decode): a block per (row, 8 dims), so many blocks share the slots; many
  // rows (prefill splits): a warp per row.
  if (head_dim % 4 == 0 && n_rows <= 64) {
    const dim3 grid(n_rows, (head_dim + kCd - 1) / kCd);
    launch_maybe_pdl(combine_kernel, grid, dim3(kCombineThreads), 0, s, part_o, part_lse, n_slots, n_rows, n_qh,
                     head_dim, out, out_stride, lse);
  } else {
    // Whole float4s need every row start 16-byte aligned (part_o's rows are head_dim apart).
    const bool vec = head_dim % 4 == 0 && out_stride % 4 == 0 && reinterpret_cast<uintptr_t>(out) % 16 == 0 &&
                     reinterpret_cast<uintptr_t>(part_o) % 16 == 0;
    const dim3 grid((n_rows + kWarps - 1) / kWarps);
    launch_maybe_pdl(vec ? combine_rows_kernel<4> : combine_rows_kernel<1>, grid, dim3(kWarps * 32), 0, s, part_o,
                     part_lse, n_slots, n_rows, n_qh, head_dim, out, out_stride, lse);
  }
  HI_CUDA_CHECK_LAUNCH("combine_kernel");
}

}  // namespace headinfer::cuda
