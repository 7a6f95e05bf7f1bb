// CUDA-core flash attention with split-KV ("flash-decoding"): a block holds up to
// kSimtRows query rows (all the query heads of a KV group for decode) and walks the
// keys of its split once, in tiles of kSimtKeys keys staged to shared memory as f32.
// It serves decode for every KV dtype, and prefill for F32 KV or head dims without a
// tensor-core kernel. Scores use f32 throughout; softmax runs in the log2 domain.
//
// Per tile: lane j of every warp scores key j against the warp's rows
// (warp, warp + 8, ...), updates the running max / sum with warp shuffles, and then
// accumulates P V with each lane owning output dims lane, lane + 32, ...
#include <cmath>

#include "backend/cuda/attention_common.cuh"
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/device_util.cuh"
#include "backend/cuda/kernels.hpp"

namespace headinfer::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kRowsPerWarp = kSimtRows / kWarps;
static_assert(kSimtKeys == 32, "one key per lane");
static_assert(kSimtRows % kWarps == 0, "rows split evenly over warps");

constexpr size_t simt_smem_bytes(int head_dim) {
  return sizeof(float) * (static_cast<size_t>(kSimtRows) * head_dim + static_cast<size_t>(kSimtKeys) * (head_dim + 1) +
                          static_cast<size_t>(kSimtKeys) * head_dim);
}

// Stages kSimtKeys rows of head_dim elements (count real rows, the rest zero) as f32
// into dst with row stride ld.
template <typename T>
__device__ __forceinline__ void stage_rows(float* dst, int ld, const T* src, int count, int head_dim) {
  constexpr int kVec = 16 / sizeof(T);
  const int tid = threadIdx.x;
  if ((reinterpret_cast<uintptr_t>(src) & 15) == 0 && head_dim % kVec == 0) {
    const int per_row = head_dim / kVec;
    for (int iv = tid; iv < kSimtKeys * per_row; iv += kThreads) {
      const int j = iv / per_row;
      const int d = (iv - j * per_row) * kVec;
      float* out = dst + j * ld + d;
      if (j < count) {
        const uint4 raw = __ldg(reinterpret_cast<const uint4*>(src + static_cast<int64_t>(j) * head_dim + d));
        const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
        for (int u = 0; u < kVec; ++u) out[u] = to_f32(e[u]);
      } else {
#pragma unroll
        for (int u = 0; u < kVec; ++u) out[u] = 0.f;
      }
    }
  } else {
    for (int i = tid; i < kSimtKeys * head_dim; i += kThreads) {
      const int j = i / head_dim;
      const int d = i - j * head_dim;
      dst[j * ld + d] = j < count ? to_f32(src[static_cast<int64_t>(j) * head_dim + d]) : 0.f;
    }
  }
}

// kC = number of 32-wide chunks of head_dim a lane accumulates (head_dim <= 32 * kC).
template <typename T, int kC>
__global__ void __launch_bounds__(kThreads, 3) attn_simt_kernel(const AttnParams p) {
  extern __shared__ float smem[];
  const int D = p.head_dim;
  float* qs = smem;                      // [kSimtRows][D], pre-scaled by scale * log2(e)
  float* ks = qs + kSimtRows * D;        // [kSimtKeys][D + 1] (padded: lanes read different rows)
  float* vs = ks + kSimtKeys * (D + 1);  // [kSimtKeys][D]

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int r0 = blockIdx.x * kSimtRows;
  const int nr = min(kSimtRows, p.n_rows - r0);
  const int slot = p.slot_base + blockIdx.y;
  const int64_t total = p.pieces.start[p.pieces.n];
  const int64_t kbeg = static_cast<int64_t>(blockIdx.y) * p.keys_per_split;
  const int64_t kend = min(total, kbeg + p.keys_per_split);

  for (int i = threadIdx.x; i < kSimtRows * D; i += kThreads) {
    const int r = i / D, d = i - r * D;
    float v = 0.f;
    if (r < nr) {
      const int rr = r0 + r;
      const int t = rr / p.n_qh, h = rr % p.n_qh;
      v = p.q[t * p.q_stride + static_cast<int64_t>(h) * D + d] * p.scale_log2;
    }
    qs[i] = v;
  }

  int64_t rpos[kRowsPerWarp];
  float m[kRowsPerWarp], l[kRowsPerWarp], o[kRowsPerWarp][kC];
#pragma unroll
  for (int i = 0; i < kRowsPerWarp; ++i) {
    rpos[i] = attn_row_pos(p, r0 + min(warp + kWarps * i, nr - 1));
    m[i] = -INFINITY;
    l[i] = 0.f;
#pragma unroll
    for (int c = 0; c < kC; ++c) o[i][c] = 0.f;
  }
  const int64_t qmax = attn_row_pos(p, r0 + nr - 1);
  // Rows of this warp that exist (decode with few query heads leaves warps idle in
  // the arithmetic; they still help stage tiles). Warp-uniform.
  const int my_rows = max(0, min(kRowsPerWarp, (nr - warp + kWarps - 1) / kWarps));
  __syncthreads();

  TileWalker<kSimtKeys> walker(p, kbeg, kend, qmax);
  KeyTile tile;
  while (walker.advance(tile)) {
    const T* kb = static_cast<const T*>(walker.k) + tile.local * D;
    const T* vb = static_cast<const T*>(walker.v) + tile.local * D;
    stage_rows<T>(ks, D + 1, kb, tile.count, D);
    stage_rows<T>(vs, D, vb, tile.count, D);
    __syncthreads();

    float s[kRowsPerWarp];
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) s[i] = 0.f;
    const float* kr = ks + lane * (D + 1);
    const float* qw = qs + warp * D;
    if (my_rows == kRowsPerWarp) {
      for (int d = 0; d < D; ++d) {
        const float kv = kr[d];
#pragma unroll
        for (int i = 0; i < kRowsPerWarp; ++i) s[i] = fmaf(qw[kWarps * i * D + d], kv, s[i]);
      }
    } else if (my_rows > 0) {
      for (int d = 0; d < D; ++d) {
        const float kv = kr[d];
#pragma unroll
        for (int i = 0; i < kRowsPerWarp; ++i)
          if (i < my_rows) s[i] = fmaf(qw[kWarps * i * D + d], kv, s[i]);
      }
    }

    const int64_t kpos = tile.pos + lane;
    const bool valid = lane < tile.count;
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) {
      if (i >= my_rows) break;
      const float si = (valid && (!p.causal || kpos <= rpos[i])) ? s[i] : -INFINITY;
      const float mn = fmaxf(m[i], warp_max(si));
      const float mu = mn == -INFINITY ? 0.f : mn;  // no key yet: keep exp2 finite
      const float alpha = exp2f(m[i] - mu);
      const float pj = exp2f(si - mu);
      l[i] = l[i] * alpha + warp_sum(pj);
      m[i] = mn;
#pragma unroll
      for (int c = 0; c < kC; ++c) o[i][c] *= alpha;
      s[i] = pj;
    }

    for (int j = 0; my_rows > 0 && j < tile.count; ++j) {
      float vcol[kC];
#pragma unroll
      for (int c = 0; c < kC; ++c) {
        const int d = lane + 32 * c;
        vcol[c] = d < D ? vs[j * D + d] : 0.f;
      }
#pragma unroll
      for (int i = 0; i < kRowsPerWarp; ++i) {
        if (i >= my_rows) break;
        const float pj = __shfl_sync(0xffffffffu, s[i], j);
#pragma unroll
        for (int c = 0; c < kC; ++c) o[i][c] = fmaf(pj, vcol[c], o[i][c]);
      }
    }
    __syncthreads();  // before the next tile overwrites ks / vs
  }

#pragma unroll
  for (int i = 0; i < kRowsPerWarp; ++i) {
    const int r = warp + kWarps * i;
    if (r >= nr) continue;
    float* orow = attn_out_row(p, slot, r0 + r);
    const bool any = l[i] > 0.f;
    const float inv = any ? 1.0f / l[i] : 0.f;
#pragma unroll
    for (int c = 0; c < kC; ++c) {
      const int d = lane + 32 * c;
      if (d < D) orow[d] = o[i][c] * inv;
    }
    float* lp = attn_lse_at(p, slot, r0 + r);
    if (lp && lane == 0) *lp = any ? (m[i] + log2f(l[i])) * 0.69314718055994531f : -INFINITY;
  }
}

template <typename T, int kC>
void launch_simt_typed(const AttnParams& p, int n_splits, cudaStream_t s) {
  allow_dynamic_smem<attn_simt_kernel<T, kC>>(simt_smem_bytes(32 * kC));
  dim3 grid((p.n_rows + kSimtRows - 1) / kSimtRows, n_splits);
  attn_simt_kernel<T, kC><<<grid, kThreads, simt_smem_bytes(p.head_dim), s>>>(p);
  HI_CUDA_CHECK_LAUNCH("attn_simt_kernel");
}

template <typename T>
void launch_simt_dim(const AttnParams& p, int n_splits, cudaStream_t s) {
  if (p.head_dim <= 64)
    launch_simt_typed<T, 2>(p, n_splits, s);
  else if (p.head_dim <= 128)
    launch_simt_typed<T, 4>(p, n_splits, s);
  else
    launch_simt_typed<T, 8>(p, n_splits, s);
}

}  // namespace

void launch_attention_simt(const AttnParams& p, int n_splits, DType kv, cudaStream_t s) {
  if (p.n_rows <= 0) return;
  HI_CHECK(p.head_dim > 0 && p.head_dim <= kSimtMaxHeadDim,
           "cuda attention: head_dim " << p.head_dim << " is outside 1.." << kSimtMaxHeadDim);
  switch (kv) {
    case DType::F32: launch_simt_dim<float>(p, n_splits, s); break;
    case DType::F16: launch_simt_dim<__half>(p, n_splits, s); break;
    case DType::BF16: launch_simt_dim<__nv_bfloat16>(p, n_splits, s); break;
    default: HI_FAIL("cuda attention: KV dtype " << dtype_name(kv) << " is not supported (F32, F16, BF16)");
  }
}

}  // namespace headinfer::cuda
