// The cuDNN attention path's epilogue: cuDNN writes O in the KV dtype and the
// softmax statistics per (head, token); the engine wants f32 rows (token, head) and
// an lse per row, merged by log-sum-exp into what earlier KV runs produced.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/device_util.cuh"
#include "backend/cuda/kernels.hpp"
#include "backend/cuda/lse_merge.cuh"

namespace headinfer::cuda {
namespace {

constexpr int kWarps = 4;

// One warp per (token, query head) row, query heads of all KV heads side by side
// (hq = j * n_qh + h for KV head j); lane l owns columns [l * E, l * E + E) (E = 4 for
// head_dim 128, 2 for 64: whole 8- or 4-byte loads; 1 for any other width or an
// unaligned out row). first: the run's result is the answer so far; otherwise it
// merges into (out, lse) as merge_kernel does (lse_merge).
template <typename T, int E>
__global__ void __launch_bounds__(kWarps * 32)
    sdpa_merge_kernel(const T* __restrict__ o, const float* __restrict__ stats, int n_q, int n_qh, int n_heads,
                      int64_t lse_head_stride, int head_dim, float* out, int64_t out_stride, float* lse, int first) {
  const int hq_all = n_qh * n_heads;
  const int r = blockIdx.x * kWarps + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (r >= n_q * hq_all) return;
  const int t = r / hq_all, hq = r % hq_all;
  float* orow = out + t * out_stride + static_cast<int64_t>(hq) * head_dim;
  const T* src = o + static_cast<int64_t>(r) * head_dim;
  const float lb = stats[static_cast<int64_t>(hq) * n_q + t];
  float* lp = lse + (hq / n_qh) * lse_head_stride + static_cast<int64_t>(t) * n_qh + hq % n_qh;
  const LseMerge w = lse_merge(first ? -INFINITY : *lp, lb, first);
  if (w.keep_a) return;
  for (int d = lane * E; d < head_dim; d += 32 * E) {
    float a[E] = {}, b[E];
    if (!w.take_b) load_f32(orow + d, a);
    load_f32(src + d, b);
    for (int i = 0; i < E; ++i) a[i] = w.value(a[i], b[i]);
    store_f32(orow + d, a);
  }
  __syncwarp();
  if (lane == 0) *lp = w.lse;
}

// The same for head_dim == 32 * E (every lane one E-wide piece of a row), kRows
// consecutive rows a warp with every row's loads issued before any is used: a warp per
// row kept too few bytes in flight to reach the memory's rate (each warp waited out
// one round trip for 256 bytes). The same arithmetic per value as sdpa_merge_kernel.
constexpr int kRows = 4;
template <typename T, int E>
__global__ void __launch_bounds__(kWarps * 32)
    sdpa_merge_rows_kernel(const T* __restrict__ o, const float* __restrict__ stats, int n_q, int n_qh, int n_heads,
                           int64_t lse_head_stride, float* out, int64_t out_stride, float* lse, int first) {
  constexpr int D = 32 * E;
  const int hq_all = n_qh * n_heads, rows = n_q * hq_all;
  const int r0 = (blockIdx.x * kWarps + (threadIdx.x >> 5)) * kRows;
  const int lane = threadIdx.x & 31;
  if (r0 >= rows) return;
  float a[kRows][E], b[kRows][E], la[kRows], lb[kRows];
  float* orow[kRows];
  float* lp[kRows];
#pragma unroll
  for (int i = 0; i < kRows; ++i) {
    const int r = min(r0 + i, rows - 1);  // past the end: the last row again, not stored
    const int t = r / hq_all, hq = r % hq_all;
    orow[i] = out + t * out_stride + static_cast<int64_t>(hq) * D + lane * E;
    lp[i] = lse + (hq / n_qh) * lse_head_stride + static_cast<int64_t>(t) * n_qh + hq % n_qh;
    lb[i] = stats[static_cast<int64_t>(hq) * n_q + t];
    load_f32(o + static_cast<int64_t>(r) * D + lane * E, b[i]);
    la[i] = first ? -INFINITY : *lp[i];
    if (!first) load_f32(orow[i], a[i]);
  }
  __syncwarp();  // every lane has read the lse lane 0 overwrites below
#pragma unroll
  for (int i = 0; i < kRows; ++i) {
    if (r0 + i >= rows) break;
    const LseMerge w = lse_merge(la[i], lb[i], first);
    if (w.keep_a) continue;
    for (int e = 0; e < E; ++e) a[i][e] = w.value(a[i][e], b[i][e]);
    store_f32(orow[i], a[i]);
    if (lane == 0) *lp[i] = w.lse;
  }
}

template <typename T>
void launch_merge(const T* o, const float* stats, int n_q, int n_qh, int n_heads, int64_t lse_head_stride,
                  int head_dim, float* out, int64_t out_stride, float* lse, bool first, cudaStream_t s) {
  const int rows = n_q * n_qh * n_heads;
  const dim3 grid((rows + kWarps - 1) / kWarps);
  // Whole vectors need every row start aligned (o's rows are head_dim apart).
  const bool aligned = vector_rows(4, head_dim, {out_stride}, {out, o}, 16);
  const int e = !aligned ? 1 : head_dim % 128 == 0 ? 4 : head_dim % 64 == 0 ? 2 : 1;
  auto go = [&](auto kernel) {
    kernel<<<grid, kWarps * 32, 0, s>>>(o, stats, n_q, n_qh, n_heads, lse_head_stride, head_dim, out, out_stride, lse,
                                        first ? 1 : 0);
  };
  auto go_rows = [&](auto kernel) {
    const dim3 g((rows + kWarps * kRows - 1) / (kWarps * kRows));
    kernel<<<g, kWarps * 32, 0, s>>>(o, stats, n_q, n_qh, n_heads, lse_head_stride, out, out_stride, lse,
                                     first ? 1 : 0);
  };
  if (e == 4 && head_dim == 128)
    go_rows(sdpa_merge_rows_kernel<T, 4>);
  else if (e == 2 && head_dim == 64)
    go_rows(sdpa_merge_rows_kernel<T, 2>);
  else if (e == 4)
    go(sdpa_merge_kernel<T, 4>);
  else if (e == 2)
    go(sdpa_merge_kernel<T, 2>);
  else
    go(sdpa_merge_kernel<T, 1>);
  HI_CUDA_CHECK_LAUNCH("sdpa_merge_kernel");
}

}  // namespace

void launch_sdpa_merge(const void* o, DType dt, const float* stats, int n_q, int n_qh, int n_heads,
                       int64_t lse_head_stride, int head_dim, float* out, int64_t out_stride, float* lse, bool first,
                       cudaStream_t s) {
  if (n_q * n_qh * n_heads <= 0) return;
  if (dt == DType::BF16)
    launch_merge(static_cast<const __nv_bfloat16*>(o), stats, n_q, n_qh, n_heads, lse_head_stride, head_dim, out,
                 out_stride, lse, first, s);
  else
    launch_merge(static_cast<const __half*>(o), stats, n_q, n_qh, n_heads, lse_head_stride, head_dim, out, out_stride,
                 lse, first, s);
}

}  // namespace headinfer::cuda
