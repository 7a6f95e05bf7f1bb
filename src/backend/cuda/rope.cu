// Rotate-half RoPE. Angles are position * inv_freq in double, reduced modulo 2*pi
// in double (two-part 2*pi), so they stay exact at millions of positions; cos and
// sin are taken in double and rounded to f32 once per (token, frequency).
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/device_util.cuh"
#include "backend/cuda/kernels.hpp"

namespace headinfer::cuda {
namespace {

// A decode step's RoPE (one token, a block) is a few dependent load-store rounds per
// thread: 1024 threads make them 3 for Llama-3-8B's 40 heads (and 2 for its K/V store)
// where 128 made them 20 and 16.
constexpr int kBlock = 1024;
constexpr double kTwoPiHi = 6.283185307179586232;     // nearest double to 2*pi
constexpr double kTwoPiLo = 2.4492935982947064e-16;   // 2*pi - kTwoPiHi
constexpr double kInvTwoPi = 0.15915494309189535;

// The token's cos (cs[0, half)) and sin (cs[half, 2 half)) per frequency.
__device__ __forceinline__ void rope_angles(float* cs, int64_t position, const double* __restrict__ inv_freq, int half) {
  const double pos = static_cast<double>(position);
  for (int i = threadIdx.x; i < half; i += kBlock) {
    double a = pos * inv_freq[i];
    double k = rint(a * kInvTwoPi);
    double r = fma(-k, kTwoPiHi, a);
    r = fma(-k, kTwoPiLo, r);
    double sn, cn;
    sincos(r, &sn, &cn);
    cs[i] = static_cast<float>(cn);
    cs[half + i] = static_cast<float>(sn);
  }
}

// Rotates the n_heads heads of one row in place with the angles in cs.
__device__ __forceinline__ void rope_row(float* row, const float* cs, int n_heads, int head_dim) {
  const int half = head_dim / 2;
  for (int j = threadIdx.x; j < n_heads * half; j += kBlock) {
    const int h = j / half, i = j % half;
    float* v = row + static_cast<int64_t>(h) * head_dim;
    const float x0 = v[i], x1 = v[i + half];
    const float c = cs[i], s = cs[half + i];
    v[i] = x0 * c - x1 * s;
    v[i + half] = x1 * c + x0 * s;
  }
}

// This block's token (blockIdx.x): its angles into cs (shared, head_dim floats), then
// its row rotated in place.
__device__ __forceinline__ void rope_token(float* cs, float* x, int64_t stride, int n_heads, int head_dim,
                                           int64_t pos0, const double* __restrict__ inv_freq) {
  const int64_t t = blockIdx.x;
  rope_angles(cs, pos0 + t, inv_freq, head_dim / 2);
  // The angles depend on nothing the preceding kernel writes: under programmatic
  // launch they are taken while it finishes.
  pdl_wait();
  pdl_launch_dependents();
  __syncthreads();
  rope_row(x + t * stride, cs, n_heads, head_dim);
}

__global__ void __launch_bounds__(kBlock) rope_kernel(float* x, int64_t stride, int n_heads, int head_dim,
                                                      int64_t pos0, const double* __restrict__ inv_freq) {
  extern __shared__ float cs[];  // [half] cos, then [half] sin
  rope_token(cs, x, stride, n_heads, head_dim, pos0, inv_freq);
}

// rope_kernel's rotation of token t's row, then that token's K and V rows of n_kv heads
// (k and v may lie in the rotated row: they are read after the block's barrier, by
// plain loads, as the rows rope_kernel leaves) to their destinations in the KV dtype.
template <typename T>
__global__ void __launch_bounds__(kBlock)
    rope_store_kv_kernel(float* x, int64_t stride, int n_heads, int head_dim, int64_t pos0,
                         const double* __restrict__ inv_freq, const float* k, const float* v, int64_t src_stride,
                         int n_kv, KvHeadDsts dst) {
  extern __shared__ float cs[];
  rope_token(cs, x, stride, n_heads, head_dim, pos0, inv_freq);
  __syncthreads();  // the row's rotated K, written by other threads of the block
  const int64_t t = blockIdx.x;
  const int per_side = n_kv * head_dim;
  for (int j = threadIdx.x; j < 2 * per_side; j += kBlock) {
    const int side = j / per_side, rem = j - side * per_side;
    const int h = rem / head_dim, col = rem - h * head_dim;
    const float* src = (side ? v : k) + t * src_stride + static_cast<int64_t>(h) * head_dim + col;
    T* out = static_cast<T*>(side ? dst.v[h] : dst.k[h]);
    out[t * head_dim + col] = from_f32<T>(*src);
  }
}

}  // namespace

void launch_rope(float* x, int64_t stride, int n_tokens, int n_heads, int head_dim, int64_t pos0,
                 const double* inv_freq, cudaStream_t s) {
  if (n_tokens <= 0 || n_heads <= 0 || head_dim < 2) return;
  const size_t smem = sizeof(float) * static_cast<size_t>(head_dim / 2) * 2;
  launch_maybe_pdl(rope_kernel, dim3(n_tokens), dim3(kBlock), smem, s, x, stride, n_heads, head_dim, pos0, inv_freq);
  HI_CUDA_CHECK_LAUNCH("rope_kernel");
}

void launch_rope_store_kv_heads(float* x, int64_t stride, int n_tokens, int n_heads, int head_dim, int64_t pos0,
                                const double* inv_freq, const float* k, const float* v, int64_t src_stride,
                                int n_kv_heads, DType dt, void* const* dst_k, void* const* dst_v, cudaStream_t s) {
  if (n_tokens <= 0) return;
  HI_CHECK(n_kv_heads >= 0 && n_kv_heads <= kStoreKvHeads,
           "cuda rope_store_kv_heads: " << n_kv_heads << " KV heads, at most " << kStoreKvHeads << " in one launch");
  KvHeadDsts d{};
  for (int i = 0; i < n_kv_heads; ++i) {
    d.k[i] = dst_k[i];
    d.v[i] = dst_v[i];
  }
  const size_t smem = sizeof(float) * static_cast<size_t>(head_dim / 2) * 2;
  const dim3 grid(static_cast<unsigned>(n_tokens)), block(kBlock);
  switch (dt) {
    case DType::F32:
      launch_maybe_pdl(rope_store_kv_kernel<float>, grid, block, smem, s, x, stride, n_heads, head_dim, pos0, inv_freq,
                       k, v, src_stride, n_kv_heads, d);
      break;
    case DType::F16:
      launch_maybe_pdl(rope_store_kv_kernel<__half>, grid, block, smem, s, x, stride, n_heads, head_dim, pos0,
                       inv_freq, k, v, src_stride, n_kv_heads, d);
      break;
    case DType::BF16:
      launch_maybe_pdl(rope_store_kv_kernel<__nv_bfloat16>, grid, block, smem, s, x, stride, n_heads, head_dim, pos0,
                       inv_freq, k, v, src_stride, n_kv_heads, d);
      break;
    default: HI_FAIL("cuda rope_store_kv_heads: KV dtype " << dtype_name(dt) << " is not supported (F32, F16, BF16)");
  }
  HI_CUDA_CHECK_LAUNCH("rope_store_kv_kernel");
}

}  // namespace headinfer::cuda
