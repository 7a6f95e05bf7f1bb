// Tensor-core flash attention with 32 query rows per warp (two m16 tiles), the
// FlashAttention-2 block of 4 warps x 32 rows = 128 rows: every K and V fragment read
// from shared memory feeds two MMAs instead of one, and each warp has two independent
// chains of MMAs and softmax to interleave. Q no longer fits in registers beside two
// tiles' accumulators, so the block converts it to the KV dtype once into shared
// memory and reads it back by ldmatrix. Same contract, masks, tile walk and rounding
// points as attn_mma_kernel (attention_prefill.cu): Q and P rounded to the KV dtype,
// S, the softmax and O in f32, each value summed in the same order.
// The default at head_dim 128 for calls of at least 128 rows per SM: 319 / 334 / 334 /
// 307 TFLOP/s on causal 16K / 32K, an 8K chunk after 128K keys and an 8K chunk x one 8K
// block (H200), against 267 / 276 / 274 / 206 for the 4-warp block.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>

#include "backend/cuda/attention_common.cuh"
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/device_util.cuh"
#include "backend/cuda/kernels.hpp"
#include "backend/cuda/mma_util.cuh"

namespace headinfer::cuda {
namespace {

using mma::BN;
using mma::cp_async_commit;
using mma::cp_async_wait;
using mma::ldmatrix_x4;
using mma::ldmatrix_x4_trans;
using mma::load_tile;
using mma::MmaOps;

constexpr int kWarps = 4, kMt = 2;  // warps per block, m16 tiles per warp
constexpr int kThreads = kWarps * 32;
constexpr int BM = 16 * kMt * kWarps;

// Q, then two K and two V tiles (2-byte values): tile t + 1 streams in while tile t is
// used, so a tile costs two barriers and its copies a whole tile's compute to land.
// 104 KiB at head_dim 128: two blocks per SM.
template <int D>
constexpr size_t smem_bytes() {
  return static_cast<size_t>(BM + 4 * BN) * (D + 8) * 2;
}

template <typename T, int D>
__global__ void __launch_bounds__(kThreads, 2) attn_mma_wide_kernel(const AttnParams p) {
  using Ops = MmaOps<T>;
  constexpr int kLd = D + 8;  // padded row: ldmatrix row addresses hit distinct banks
  extern __shared__ __align__(16) uint16_t smem_raw[];
  T* qs = reinterpret_cast<T*>(smem_raw);  // [BM][kLd]
  T* kv0 = qs + BM * kLd;                  // buffer b: K at kv0 + 2 b BN kLd, V after it

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, tq = lane & 3;
  // Heaviest (latest, under causal masking) row tiles first.
  const int r0 = (gridDim.x - 1 - blockIdx.x) * BM;
  const int nr = min(BM, p.n_rows - r0);
  const int slot = p.slot_base + blockIdx.y;
  const int64_t total = p.pieces.start[p.pieces.n];
  const int64_t kbeg = static_cast<int64_t>(blockIdx.y) * p.keys_per_split;
  const int64_t kend = min(total, kbeg + p.keys_per_split);

  // This thread's rows: ra + 16 t (fragment rows g) and ra + 16 t + 8 of the warp's
  // m-tile t. Their positions are kept relative to the block's first (32-bit: the
  // registers are scarce with two tiles of accumulators).
  const int ra = r0 + warp * 16 * kMt + g;
  const int64_t qmin = attn_row_pos(p, r0), qmax = attn_row_pos(p, r0 + nr - 1);
  int rel_a[kMt], rel_b[kMt];
#pragma unroll
  for (int t = 0; t < kMt; ++t) {
    rel_a[t] = static_cast<int>(attn_row_pos(p, min(ra + 16 * t, p.n_rows - 1)) - qmin);
    rel_b[t] = static_cast<int>(attn_row_pos(p, min(ra + 16 * t + 8, p.n_rows - 1)) - qmin);
  }

  TileWalker<BN> walker(p, kbeg, kend, qmax);
  KeyTile cur, nxt;
  // One tile's K then V into buffer b, each its own cp.async group.
  auto load_kv = [&](int b, const KeyTile& t) {
    T* k = kv0 + 2 * b * BN * kLd;
    load_tile<T, D, kThreads>(k, static_cast<const T*>(p.pieces.k[t.piece]) + t.local * D, t.count);
    cp_async_commit();
    load_tile<T, D, kThreads>(k + BN * kLd, static_cast<const T*>(p.pieces.v[t.piece]) + t.local * D, t.count);
    cp_async_commit();
  };
  bool has = walker.advance(cur);
  if (has) load_kv(0, cur);
  // Q rows (f32, q_stride apart per token) rounded to the KV dtype, rows past the end
  // zero, while the first K tile is in flight; the first barrier below publishes them.
  for (int i = threadIdx.x; i < BM * (D / 2); i += kThreads) {
    const int row = i / (D / 2), c = (i % (D / 2)) * 2, r = r0 + row;
    uint32_t v = 0u;
    if (r < p.n_rows) {
      const float* q = p.q + (r / p.n_qh) * p.q_stride + static_cast<int64_t>(r % p.n_qh) * D + c;
      v = Ops::pack(q[0], q[1]);
    }
    *reinterpret_cast<uint32_t*>(qs + row * kLd + c) = v;
  }

  float oacc[kMt][D / 8][4];
#pragma unroll
  for (int t = 0; t < kMt; ++t)
#pragma unroll
    for (int i = 0; i < D / 8; ++i) oacc[t][i][0] = oacc[t][i][1] = oacc[t][i][2] = oacc[t][i][3] = 0.f;
  float m_a[kMt], m_b[kMt], l_a[kMt], l_b[kMt];
#pragma unroll
  for (int t = 0; t < kMt; ++t) {
    m_a[t] = m_b[t] = -INFINITY;
    l_a[t] = l_b[t] = 0.f;
  }
  // ldmatrix addresses of this lane in a warp's 16 x 16 Q sub-tile (A operand order).
  const T* qlane = qs + (warp * 16 * kMt + (lane & 15)) * kLd + (lane >> 4) * 8;

  int buf = 0;
  while (has) {
    cp_async_wait<1>();  // K of this tile has landed (V may still be in flight) ...
    __syncthreads();     // ... for every thread, and every warp is done with the other buffer
    const bool has_next = walker.advance(nxt);
    if (has_next) {
      load_kv(buf ^ 1, nxt);
    } else {
      cp_async_commit();  // empty groups: the waits below count two per tile
      cp_async_commit();
    }
    const T* ks = kv0 + 2 * buf * BN * kLd;
    const T* vs = ks + BN * kLd;

    // S = Q K^T: each K fragment serves both m-tiles.
    float sacc[kMt][BN / 8][4];
#pragma unroll
    for (int t = 0; t < kMt; ++t)
#pragma unroll
      for (int j = 0; j < BN / 8; ++j) sacc[t][j][0] = sacc[t][j][1] = sacc[t][j][2] = sacc[t][j][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t qa[kMt][4];
#pragma unroll
      for (int t = 0; t < kMt; ++t) ldmatrix_x4(qa[t], qlane + t * 16 * kLd + kk * 16);
#pragma unroll
      for (int jn = 0; jn < BN / 16; ++jn) {
        const int mi = lane >> 3;
        const int key = jn * 16 + (mi >> 1) * 8 + (lane & 7);
        const int d = kk * 16 + (mi & 1) * 8;
        uint32_t b[4];
        ldmatrix_x4(b, ks + key * kLd + d);
#pragma unroll
        for (int t = 0; t < kMt; ++t) {
          Ops::mma(sacc[t][2 * jn], qa[t], b[0], b[1]);
          Ops::mma(sacc[t][2 * jn + 1], qa[t], b[2], b[3]);
        }
      }
    }

    // Scale, mask, online softmax per m-tile.
    const bool unmasked = cur.count == BN && (!p.causal || cur.pos + BN - 1 <= qmin);
    // The tile's first key relative to qmin, clamped to +-2^30: further back it precedes
    // every row either way, and keys past the rows are reached only without causality.
    constexpr int64_t kFar = int64_t{1} << 30;
    const int kpos = static_cast<int>(min(max(cur.pos - qmin, -kFar), kFar));
#pragma unroll
    for (int t = 0; t < kMt; ++t)
      mma::softmax_step<D>(sacc[t], oacc[t], m_a[t], m_b[t], l_a[t], l_b[t], p.scale_log2, unmasked, cur.count,
                           p.causal != 0, kpos, rel_a[t], rel_b[t], tq, /*skip_unit_rescale=*/true);

    cp_async_wait<2>();  // V of this tile has landed (the next tile's K and V may not)
    __syncthreads();

    // O += P V: P as A fragments straight from the S accumulators; each V fragment
    // serves both m-tiles.
#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk) {
      uint32_t pa[kMt][4];
#pragma unroll
      for (int t = 0; t < kMt; ++t) {
        pa[t][0] = Ops::pack(sacc[t][2 * kk][0], sacc[t][2 * kk][1]);
        pa[t][1] = Ops::pack(sacc[t][2 * kk][2], sacc[t][2 * kk][3]);
        pa[t][2] = Ops::pack(sacc[t][2 * kk + 1][0], sacc[t][2 * kk + 1][1]);
        pa[t][3] = Ops::pack(sacc[t][2 * kk + 1][2], sacc[t][2 * kk + 1][3]);
      }
#pragma unroll
      for (int dn = 0; dn < D / 16; ++dn) {
        const int mi = lane >> 3;
        const int key = kk * 16 + (mi & 1) * 8 + (lane & 7);
        const int d = dn * 16 + (mi >> 1) * 8;
        uint32_t b[4];
        ldmatrix_x4_trans(b, vs + key * kLd + d);
#pragma unroll
        for (int t = 0; t < kMt; ++t) {
          Ops::mma(oacc[t][2 * dn], pa[t], b[0], b[1]);
          Ops::mma(oacc[t][2 * dn + 1], pa[t], b[2], b[3]);
        }
      }
    }
    cur = nxt;
    has = has_next;
    buf ^= 1;
  }
  cp_async_wait<0>();  // no copy outlives the block

#pragma unroll
  for (int t = 0; t < kMt; ++t) mma::store_rows<D>(p, slot, ra + 16 * t, oacc[t], m_a[t], m_b[t], l_a[t], l_b[t], tq);
}

template <typename T, int D>
void prepare_wide() {
  allow_dynamic_smem<attn_mma_wide_kernel<T, D>>(smem_bytes<D>());
}

template <typename T, int D>
void launch_wide_typed(const AttnParams& p, int n_splits, cudaStream_t s) {
  prepare_wide<T, D>();
  const dim3 grid((p.n_rows + BM - 1) / BM, n_splits);
  attn_mma_wide_kernel<T, D><<<grid, kThreads, smem_bytes<D>(), s>>>(p);
  HI_CUDA_CHECK_LAUNCH("attn_mma_wide_kernel");
}

template <typename T, int D>
int wide_blocks_per_sm_typed() {
  prepare_wide<T, D>();
  int n = 0;
  HI_CUDA_CHECK(
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, attn_mma_wide_kernel<T, D>, kThreads, smem_bytes<D>()));
  return n;
}

}  // namespace

int attention_mma_wide_rows() { return BM; }

int attention_mma_wide_blocks_per_sm(DType kv, int head_dim) {
  if (!attention_mma_supported(kv, head_dim)) return 1;
  const bool bf = kv == DType::BF16, d64 = head_dim == 64;
  const int n = bf ? (d64 ? wide_blocks_per_sm_typed<__nv_bfloat16, 64>() : wide_blocks_per_sm_typed<__nv_bfloat16, 128>())
                   : (d64 ? wide_blocks_per_sm_typed<__half, 64>() : wide_blocks_per_sm_typed<__half, 128>());
  return n < 1 ? 1 : n;
}

void launch_attention_mma_wide(const AttnParams& p, int n_splits, DType kv, cudaStream_t s) {
  if (p.n_rows <= 0) return;
  HI_CHECK(attention_mma_supported(kv, p.head_dim), "cuda attention: no tensor-core kernel for KV "
                                                        << dtype_name(kv) << " with head_dim " << p.head_dim);
  const bool bf = kv == DType::BF16, d64 = p.head_dim == 64;
  if (bf)
    d64 ? launch_wide_typed<__nv_bfloat16, 64>(p, n_splits, s) : launch_wide_typed<__nv_bfloat16, 128>(p, n_splits, s);
  else
    d64 ? launch_wide_typed<__half, 64>(p, n_splits, s) : launch_wide_typed<__half, 128>(p, n_splits, s);
}

}  // namespace headinfer::cuda
