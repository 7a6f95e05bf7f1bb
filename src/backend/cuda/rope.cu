// Rotate-half RoPE. Angles are position * inv_freq in double, reduced modulo 2*pi
// in double (two-part 2*pi), so they stay exact at millions of positions; cos and
// sin are taken in double and rounded to f32 once per (token, frequency).
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/device_util.cuh"
#include "backend/cuda/kernels.hpp"
#include "backend/cuda/rope_math.cuh"

namespace headinfer::cuda {
namespace {

// A decode step's RoPE (one token, a block) is a few dependent load-store rounds per
// thread: 1024 threads make them 3 for Llama-3-8B's 40 heads (and 2 for its K/V store)
// where 128 made them 20 and 16.
constexpr int kBlock = 1024;
constexpr int kPairBlock = 256;
// Up to this many tokens a launch takes a thread per rotated pair (decode); longer
// chunks a block per kTileTokens tokens (or, where rows do not split into 16-byte
// vectors, a block per token), whose angles are taken once per token, not per head.
constexpr int kPairTokens = 16;
constexpr int kTileTokens = 8;
constexpr int kTileBlock = 256;

// The token's cos (cs[0, half)) and sin (cs[half, 2 half)) per frequency.
__device__ __forceinline__ void rope_angles(float* cs, int64_t position, const double* __restrict__ inv_freq, int half) {
  for (int i = threadIdx.x; i < half; i += kBlock) rope_angle(position, inv_freq[i], cs[i], cs[half + i]);
}

// Rotates the n_heads heads of one row in place with the angles in cs.
__device__ __forceinline__ void rope_row(float* row, const float* cs, int n_heads, int head_dim) {
  const int half = head_dim / 2;
  for (int j = threadIdx.x; j < n_heads * half; j += kBlock) {
    const int h = j / half, i = j % half;
    float* v = row + static_cast<int64_t>(h) * head_dim;
    rotate_pair(v[i], v[i + half], cs[i], cs[half + i], v[i], v[i + half]);
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

// The decode case of rope_store_kv_kernel when K is the last n_kv of the rotated heads
// of the row and V follows it (the fused QKV projection's layout): one thread per pair
// (i, i + half) of a head, rotated heads first, then V's. A thread takes its own angle
// and stores the K pair it rotated, so no round waits on another: one load and one
// store deep, where a block per token is a few rounds of its 1024 threads.
template <typename T>
__global__ void __launch_bounds__(kPairBlock)
    rope_store_kv_pairs_kernel(float* x, int64_t stride, int n_heads, int head_dim, int64_t pos0,
                               const double* __restrict__ inv_freq, int n_kv, KvHeadDsts dst) {
  const int half = head_dim / 2;
  const int j = blockIdx.y * kPairBlock + threadIdx.x;
  if (j >= (n_heads + n_kv) * half) return;
  const int h = j / half, i = j - h * half;
  const int64_t t = blockIdx.x;
  float c = 1.f, s = 0.f;
  if (h < n_heads) rope_angle(pos0 + t, inv_freq[i], c, s);  // before the wait: depends on nothing written
  pdl_wait();
  pdl_launch_dependents();
  float* v = x + t * stride + static_cast<int64_t>(h) * head_dim;
  float y0 = v[i], y1 = v[i + half];
  if (h < n_heads) {
    rotate_pair(y0, y1, c, s, y0, y1);
    v[i] = y0;
    v[i + half] = y1;
  }
  const int kv = h - (n_heads - n_kv);  // K head kv (< n_kv), or V head kv - n_kv
  if (kv < 0) return;
  T* out = static_cast<T*>(kv < n_kv ? dst.k[kv] : dst.v[kv - n_kv]) + t * head_dim;
  out[i] = from_f32<T>(y0);
  out[i + half] = from_f32<T>(y1);
}

// A prefill chunk's RoPE + KV store for the fused [q | k | v] layout of the pair kernel,
// kTileTokens tokens a block. The tile's angles go to shared memory first (one double
// sincos per thread or two, in parallel, where the block-per-token kernel has 64 of its
// 1024 threads take them while the rest wait); then every thread takes 16-byte quads:
// four rotated pairs (x0 quad at i, x1 quad at i + half) of a rotated head, stored back
// and, for a K head, to its slab; or four values of a V head to its slab. Thousands of
// independent quads a block keep far more bytes in flight than a block per token's
// rounds of 4-byte loads between barriers. Each pair goes through rotate_pair with the
// same angle, so the bits are the other kernels'.
template <typename T>
__global__ void __launch_bounds__(kTileBlock)
    rope_store_kv_tile_kernel(float* x, int64_t stride, int n_tokens, int n_heads, int head_dim, int64_t pos0,
                              const double* __restrict__ inv_freq, int n_kv, KvHeadDsts dst) {
  extern __shared__ float cs[];  // per tile token: [half] cos, then [half] sin
  const int half = head_dim / 2;
  const int64_t t0 = static_cast<int64_t>(blockIdx.x) * kTileTokens;
  const int tokens = static_cast<int>(n_tokens - t0 < kTileTokens ? n_tokens - t0 : kTileTokens);
  for (int j = threadIdx.x; j < tokens * half; j += kTileBlock) {
    const int tt = j / half, i = j - tt * half;
    rope_angle(pos0 + t0 + tt, inv_freq[i], cs[tt * head_dim + i], cs[tt * head_dim + half + i]);
  }
  pdl_wait();
  pdl_launch_dependents();
  __syncthreads();
  const int quads = half / 4;           // quads in half a head
  const int rotated = n_heads * quads;  // a token's rotated items, then its V heads' quads
  const int per_token = rotated + n_kv * (head_dim / 4);
  for (int j = threadIdx.x; j < tokens * per_token; j += kTileBlock) {
    const int tt = j / per_token, r = j - tt * per_token;
    const int64_t t = t0 + tt;
    float* row = x + t * stride;
    if (r < rotated) {
      const int h = r / quads, i = (r - h * quads) * 4;
      float4* p0 = reinterpret_cast<float4*>(row + static_cast<int64_t>(h) * head_dim + i);
      float4* p1 = reinterpret_cast<float4*>(row + static_cast<int64_t>(h) * head_dim + half + i);
      const float4 a = *p0, b = *p1;
      const float* c = cs + tt * head_dim + i;
      const float* sn = c + half;
      float y0[4], y1[4];
      rotate_pair(a.x, b.x, c[0], sn[0], y0[0], y1[0]);
      rotate_pair(a.y, b.y, c[1], sn[1], y0[1], y1[1]);
      rotate_pair(a.z, b.z, c[2], sn[2], y0[2], y1[2]);
      rotate_pair(a.w, b.w, c[3], sn[3], y0[3], y1[3]);
      *p0 = make_float4(y0[0], y0[1], y0[2], y0[3]);
      *p1 = make_float4(y1[0], y1[1], y1[2], y1[3]);
      const int kv = h - (n_heads - n_kv);
      if (kv >= 0) {
        T* out = static_cast<T*>(dst.k[kv]) + t * head_dim;
        store_f32<4>(out + i, y0);
        store_f32<4>(out + half + i, y1);
      }
    } else {
      const int q = r - rotated, per_head = head_dim / 4;
      const int h = q / per_head, i = (q - h * per_head) * 4;
      const float4 a = *reinterpret_cast<const float4*>(row + static_cast<int64_t>(n_heads + h) * head_dim + i);
      const float f[4] = {a.x, a.y, a.z, a.w};
      store_f32<4>(static_cast<T*>(dst.v[h]) + t * head_dim + i, f);
    }
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
  // f(T{}) with T the C++ type of the KV dtype.
  auto by_kv_type = [&](auto&& f) {
    switch (dt) {
      case DType::F32: f(float{}); break;
      case DType::F16: f(__half{}); break;
      case DType::BF16: f(__nv_bfloat16{}); break;
      default: HI_FAIL("cuda rope_store_kv_heads: KV dtype " << dtype_name(dt) << " is not supported (F32, F16, BF16)");
    }
  };
  // K the last n_kv_heads rotated heads of the row and V right after: the pair kernel.
  const int64_t k_off = static_cast<int64_t>(n_heads - n_kv_heads) * head_dim;
  const bool fused = n_heads >= n_kv_heads && src_stride == stride && head_dim % 2 == 0 && k == x + k_off &&
                     v == k + static_cast<int64_t>(n_kv_heads) * head_dim;
  if (n_tokens <= kPairTokens && fused) {
    const int pairs = (n_heads + n_kv_heads) * (head_dim / 2);
    const dim3 grid(static_cast<unsigned>(n_tokens), static_cast<unsigned>((pairs + kPairBlock - 1) / kPairBlock));
    by_kv_type([&](auto tag) {
      launch_maybe_pdl(rope_store_kv_pairs_kernel<decltype(tag)>, grid, dim3(kPairBlock), 0, s, x, stride, n_heads,
                       head_dim, pos0, inv_freq, n_kv_heads, d);
    });
    HI_CUDA_CHECK_LAUNCH("rope_store_kv_pairs_kernel");
    return;
  }
  // The same layout, a chunk: the tile kernel where rows, heads and slabs split into
  // 16-byte quads of f32 (and quads of the KV dtype).
  const size_t kv_quad = dtype_bytes(dt, 4);
  bool quads = fused && head_dim % 8 == 0 && stride % 4 == 0 && aligned_to(x, 16);
  for (int i = 0; quads && i < n_kv_heads; ++i) quads = aligned_to(d.k[i], kv_quad) && aligned_to(d.v[i], kv_quad);
  if (quads) {
    const size_t smem = sizeof(float) * static_cast<size_t>(kTileTokens) * head_dim;
    const dim3 grid(static_cast<unsigned>((n_tokens + kTileTokens - 1) / kTileTokens));
    by_kv_type([&](auto tag) {
      launch_maybe_pdl(rope_store_kv_tile_kernel<decltype(tag)>, grid, dim3(kTileBlock), smem, s, x, stride, n_tokens,
                       n_heads, head_dim, pos0, inv_freq, n_kv_heads, d);
    });
    HI_CUDA_CHECK_LAUNCH("rope_store_kv_tile_kernel");
    return;
  }
  const size_t smem = sizeof(float) * static_cast<size_t>(head_dim / 2) * 2;
  const dim3 grid(static_cast<unsigned>(n_tokens)), block(kBlock);
  by_kv_type([&](auto tag) {
    launch_maybe_pdl(rope_store_kv_kernel<decltype(tag)>, grid, block, smem, s, x, stride, n_heads, head_dim, pos0,
                     inv_freq, k, v, src_stride, n_kv_heads, d);
  });
  HI_CUDA_CHECK_LAUNCH("rope_store_kv_kernel");
}

}  // namespace headinfer::cuda
