// The cuDNN attention path's epilogue: cuDNN writes O in the KV dtype and the
// softmax statistics per (head, token); the engine wants f32 rows (token, head) and
// an lse per row, merged by log-sum-exp into what earlier KV runs produced.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/kernels.hpp"

namespace headinfer::cuda {
namespace {

constexpr int kWarps = 4;

__device__ __forceinline__ float load_f(const __nv_bfloat16* p) { return __bfloat162float(*p); }
__device__ __forceinline__ float load_f(const __half* p) { return __half2float(*p); }

// One warp per (token, query head) row, query heads of all KV heads side by side
// (hq = j * n_qh + h for KV head j). first: the run's result is the answer so far;
// otherwise it merges into (out, lse) exactly as merge_kernel does.
template <typename T>
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
  const float la = first ? -INFINITY : *lp;
  if (!first && lb == -INFINITY) return;
  if (la == -INFINITY) {
    for (int d = lane; d < head_dim; d += 32) orow[d] = lb == -INFINITY ? 0.f : load_f(src + d);
    __syncwarp();
    if (lane == 0) *lp = lb;
    return;
  }
  const float m = fmaxf(la, lb);
  const float wa = expf(la - m), wb = expf(lb - m);
  const float inv = 1.0f / (wa + wb);
  for (int d = lane; d < head_dim; d += 32) orow[d] = (orow[d] * wa + load_f(src + d) * wb) * inv;
  __syncwarp();
  if (lane == 0) *lp = m + logf(wa + wb);
}

}  // namespace

void launch_sdpa_merge(const void* o, DType dt, const float* stats, int n_q, int n_qh, int n_heads,
                       int64_t lse_head_stride, int head_dim, float* out, int64_t out_stride, float* lse, bool first,
                       cudaStream_t s) {
  const int rows = n_q * n_qh * n_heads;
  if (rows <= 0) return;
  const dim3 grid((rows + kWarps - 1) / kWarps);
  if (dt == DType::BF16)
    sdpa_merge_kernel<<<grid, kWarps * 32, 0, s>>>(static_cast<const __nv_bfloat16*>(o), stats, n_q, n_qh, n_heads,
                                                   lse_head_stride, head_dim, out, out_stride, lse, first ? 1 : 0);
  else
    sdpa_merge_kernel<<<grid, kWarps * 32, 0, s>>>(static_cast<const __half*>(o), stats, n_q, n_qh, n_heads,
                                                   lse_head_stride, head_dim, out, out_stride, lse, first ? 1 : 0);
  HI_CUDA_CHECK_LAUNCH("sdpa_merge_kernel");
}

}  // namespace headinfer::cuda
