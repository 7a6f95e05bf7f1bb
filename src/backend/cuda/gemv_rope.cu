// A decode token's fused QKV projection with its RoPE and K/V store in the epilogue.
//
// Why: in a decode layer the RoPE + KV store kernel sat between the QKV GEMV and the
// attention, one more short kernel and boundary in a chain of latency-bound steps. The
// GEMV's blocks already hold every output value; rotate-half RoPE pairs value i of a
// head with value i + head_dim / 2, so a block that owns both rows of its pairs can
// rotate them and write the new token's K and V rows to their slabs itself.
//
// A block of kWarps warps owns kPairs = kWarps / 2 pairs of one head: warp w < kPairs
// streams row i0 + w, warp w >= kPairs row i0 + (w - kPairs) + head_dim / 2, one row a
// warp as the plain GEMV does for this shape (so the same stream of W), with the row's
// sum from gemv_warp_dot (the GEMV's bits). The sums meet in shared memory; thread j <
// kPairs adds the bias as the GEMV does, rotates pair j with rope_angle / rotate_pair
// (the RoPE kernels' bits) where its head is rotated, writes both values back and, for
// a K or V head, stores them to the slab in the KV dtype.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/device_util.cuh"
#include "backend/cuda/gemv_dot.cuh"
#include "backend/cuda/kernels.hpp"
#include "backend/cuda/rope_math.cuh"

namespace headinfer::cuda {
namespace {

constexpr int kWarps = 8;
constexpr int kPairs = kWarps / 2;
constexpr int kUnroll = 4;  // the plain GEMV's tuning for a QKV-sized matrix and one row

// Heads [0, n_rot) are rotated (Q's, then K's last n_kv of them); heads [n_rot, n_rot +
// n_kv) are V's. Head h's rows are h * head_dim + [0, head_dim).
template <typename T, typename KvT>
__global__ void __launch_bounds__(kWarps * 32)
    gemv_rope_store_kernel(const T* __restrict__ w, int C, const float* __restrict__ x, const void* __restrict__ bias,
                           DType bias_dt, float* __restrict__ out, int n_rot, int n_kv, int head_dim, int64_t pos,
                           const double* __restrict__ inv_freq, KvHeadDsts dst, int prefetch_lines) {
  __shared__ float sums[kWarps];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int half = head_dim / 2;
  const int groups = half / kPairs;  // blocks a head
  const int head = blockIdx.x / groups;
  const int i0 = (blockIdx.x - head * groups) * kPairs;
  const int64_t row = static_cast<int64_t>(head) * head_dim + i0 + warp % kPairs + (warp / kPairs) * half;
  const uint4* const wr[1] = {reinterpret_cast<const uint4*>(w + row * C)};
  const bool rotated = head < n_rot;
  // Neither the angles nor W depend on the kernel before this one (the norm writing x):
  // under programmatic launch they are taken and requested while it finishes.
  float c = 1.f, s = 0.f;
  if (threadIdx.x < kPairs && rotated) rope_angle(pos, inv_freq[i0 + threadIdx.x], c, s);
  for (int l = lane; l < prefetch_lines; l += 32) prefetch_l2(reinterpret_cast<const char*>(wr[0]) + l * kGemvLine);
  pdl_wait();
  pdl_launch_dependents();
  float acc[1][1];
  gemv_warp_dot<T, 1, kUnroll, 1>(wr, C / 8, x, 0, lane, acc);
  if (lane == 0) sums[warp] = acc[0][0] + (bias ? load_as_f32(bias, bias_dt, row) : 0.f);
  __syncthreads();
  if (threadIdx.x >= kPairs) return;
  const int i = i0 + threadIdx.x;
  float y0 = sums[threadIdx.x], y1 = sums[threadIdx.x + kPairs];
  if (rotated) rotate_pair(y0, y1, c, s, y0, y1);
  float* o = out + static_cast<int64_t>(head) * head_dim;
  o[i] = y0;
  o[i + half] = y1;
  const int kv = head - (n_rot - n_kv);  // K head kv (< n_kv), or V head kv - n_kv
  if (kv < 0) return;
  KvT* d = static_cast<KvT*>(kv < n_kv ? dst.k[kv] : dst.v[kv - n_kv]);
  d[i] = from_f32<KvT>(y0);
  d[i + half] = from_f32<KvT>(y1);
}

template <typename T, typename KvT>
void launch_typed(const T* w, int R, int C, const float* x, const void* bias, DType bias_dt, float* out, int n_rot,
                  int n_kv, int head_dim, int64_t pos, const double* inv_freq, const KvHeadDsts& d,
                  int64_t prefetch_bytes, cudaStream_t s) {
  const unsigned blocks = static_cast<unsigned>(R / (2 * kPairs));
  launch_maybe_pdl(gemv_rope_store_kernel<T, KvT>, dim3(blocks), dim3(kWarps * 32), 0, s, w, C, x, bias, bias_dt,
                   out, n_rot, n_kv, head_dim, pos, inv_freq, d, gemv_prefetch_lines<T>(R, C, prefetch_bytes));
  HI_CUDA_CHECK_LAUNCH("gemv_rope_store_kernel");
}

template <typename T>
bool launch_w(const T* w, int R, int C, const float* x, const void* bias, DType bias_dt, float* out, int n_rot,
              int n_kv, int head_dim, int64_t pos, const double* inv_freq, DType kv_dt, const KvHeadDsts& d,
              int64_t prefetch_bytes, cudaStream_t s) {
  switch (kv_dt) {
    case DType::F32:
      launch_typed<T, float>(w, R, C, x, bias, bias_dt, out, n_rot, n_kv, head_dim, pos, inv_freq, d, prefetch_bytes,
                             s);
      return true;
    case DType::F16:
      launch_typed<T, __half>(w, R, C, x, bias, bias_dt, out, n_rot, n_kv, head_dim, pos, inv_freq, d,
                              prefetch_bytes, s);
      return true;
    case DType::BF16:
      launch_typed<T, __nv_bfloat16>(w, R, C, x, bias, bias_dt, out, n_rot, n_kv, head_dim, pos, inv_freq, d,
                                     prefetch_bytes, s);
      return true;
    default: return false;
  }
}

}  // namespace

bool launch_gemv_rope_store(const float* x, const void* w, DType wdt, int R, int C, const void* bias, DType bias_dt,
                            float* out, int n_rot, int n_kv, int head_dim, int64_t pos, const double* inv_freq,
                            DType kv_dt, void* const* dst_k, void* const* dst_v, int64_t prefetch_bytes,
                            cudaStream_t s) {
  // The plain GEMV's vector path (16-byte W chunks and x quads), whole groups of
  // kPairs pairs a head, and the fused [q | k | v] rows.
  const bool shape = head_dim > 0 && head_dim % (2 * kPairs) == 0 && n_kv >= 1 && n_kv <= kStoreKvHeads &&
                     n_rot >= n_kv && static_cast<int64_t>(n_rot + n_kv) * head_dim == R && C % 8 == 0;
  if (!shape || !aligned_to(w, 16) || !aligned_to(x, 16) || (wdt != DType::BF16 && wdt != DType::F16)) return false;
  if (bias && bias_dt != DType::F32 && bias_dt != DType::BF16 && bias_dt != DType::F16) return false;
  KvHeadDsts d{};
  for (int i = 0; i < n_kv; ++i) {
    d.k[i] = dst_k[i];
    d.v[i] = dst_v[i];
  }
  if (wdt == DType::BF16)
    return launch_w(static_cast<const __nv_bfloat16*>(w), R, C, x, bias, bias_dt, out, n_rot, n_kv, head_dim, pos,
                    inv_freq, kv_dt, d, prefetch_bytes, s);
  return launch_w(static_cast<const __half*>(w), R, C, x, bias, bias_dt, out, n_rot, n_kv, head_dim, pos, inv_freq,
                  kv_dt, d, prefetch_bytes, s);
}

}  // namespace headinfer::cuda
