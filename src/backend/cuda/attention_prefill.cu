// Tensor-core flash attention (prefill / chunked prefill) for BF16 and F16 KV,
// head_dim 64 or 128. FlashAttention-2 structure on mma.sync.m16n8k16:
//   * a block = kWarps warps (4 or 8) = 16 * kWarps query rows; each warp owns 16 rows,
//     whose Q fragments (converted from f32 to the KV dtype) stay in registers;
//   * key tiles of kMmaKeys (64) keys are copied to shared memory with cp.async
//     (K of the next tile streams in while P V of this one runs), never straddling a
//     piece; rows past a piece's end are zero-filled and masked;
//   * S = Q K^T and O += P V accumulate in f32; the online softmax runs on the S
//     fragments in registers (log2 domain), P is re-packed as the A operand of P V.
// Fragment layouts follow the PTX ISA for m16n8k16 (g = lane / 4, q = lane % 4):
//   A regs {(g, 2q..2q+1), (g+8, 2q..), (g, 2q+8..), (g+8, 2q+8..)},
//   B regs {(k = 2q..2q+1, n = g), (k = 2q+8.., n = g)}, C {(g, 2q..), (g+8, 2q..)}.
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

template <typename T, int D, int kWarps>
__global__ void __launch_bounds__(kWarps * 32, kWarps == 4 ? 3 : 1) attn_mma_kernel(const AttnParams p) {
  using Ops = MmaOps<T>;
  constexpr int kThreads = kWarps * 32, BM = 16 * kWarps;
  constexpr int kLd = D + 8;  // padded row: ldmatrix row addresses hit distinct banks
  __shared__ __align__(16) uint16_t ks_raw[BN * kLd];
  __shared__ __align__(16) uint16_t vs_raw[BN * kLd];
  T* ks = reinterpret_cast<T*>(ks_raw);
  T* vs = reinterpret_cast<T*>(vs_raw);

  const mma::BlockRows br(p, BM);
  const int tq = br.tq, slot = br.slot, ra = br.ra, rb = br.rb;
  const int64_t kbeg = br.kbeg, kend = br.kend, pos_a = br.pos_a, pos_b = br.pos_b, qmin = br.qmin, qmax = br.qmax;
  const int lane = threadIdx.x & 31;

  uint32_t qf[D / 16][4];
  mma::load_q<T, D>(p, ra, rb, tq, qf);

  float oacc[D / 8][4];
#pragma unroll
  for (int i = 0; i < D / 8; ++i) oacc[i][0] = oacc[i][1] = oacc[i][2] = oacc[i][3] = 0.f;
  float m_a = -INFINITY, m_b = -INFINITY, l_a = 0.f, l_b = 0.f;

  TileWalker<BN> walker(p, kbeg, kend, qmax);
  KeyTile cur, nxt;
  bool has = walker.advance(cur);
  if (has) {
    load_tile<T, D, kThreads>(ks, static_cast<const T*>(p.pieces.k[cur.piece]) + cur.local * D, cur.count);
    cp_async_commit();
  }
  while (has) {
    load_tile<T, D, kThreads>(vs, static_cast<const T*>(p.pieces.v[cur.piece]) + cur.local * D, cur.count);
    cp_async_commit();
    const bool has_next = walker.advance(nxt);
    cp_async_wait<1>();  // K of this tile has landed (V may still be in flight)
    __syncthreads();

    // S = Q K^T for this warp's 16 rows x BN keys.
    float sacc[BN / 8][4];
#pragma unroll
    for (int j = 0; j < BN / 8; ++j) sacc[j][0] = sacc[j][1] = sacc[j][2] = sacc[j][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
      for (int jn = 0; jn < BN / 16; ++jn) {
        const int mi = lane >> 3;
        const int key = jn * 16 + (mi >> 1) * 8 + (lane & 7);
        const int d = kk * 16 + (mi & 1) * 8;
        uint32_t b[4];
        ldmatrix_x4(b, ks + key * kLd + d);
        Ops::mma(sacc[2 * jn], qf[kk], b[0], b[1]);
        Ops::mma(sacc[2 * jn + 1], qf[kk], b[2], b[3]);
      }
    }

    // Scale, mask, online softmax. A full tile whose keys all precede every row of
    // the block needs no mask.
    const bool unmasked = cur.count == BN && (!p.causal || cur.pos + BN - 1 <= qmin);
    mma::softmax_step<D>(sacc, oacc, m_a, m_b, l_a, l_b, p.scale_log2, unmasked, cur.count, p.causal != 0, cur.pos,
                         pos_a, pos_b, tq, /*skip_unit_rescale=*/true);

    __syncthreads();  // every warp is done with ks
    if (has_next) {
      load_tile<T, D, kThreads>(ks, static_cast<const T*>(p.pieces.k[nxt.piece]) + nxt.local * D, nxt.count);
      cp_async_commit();
      cp_async_wait<1>();  // V of this tile has landed
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();

    // O += P V: P (16 x BN) as A fragments straight from the S accumulators.
#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk) {
      uint32_t pa[4];
      pa[0] = Ops::pack(sacc[2 * kk][0], sacc[2 * kk][1]);
      pa[1] = Ops::pack(sacc[2 * kk][2], sacc[2 * kk][3]);
      pa[2] = Ops::pack(sacc[2 * kk + 1][0], sacc[2 * kk + 1][1]);
      pa[3] = Ops::pack(sacc[2 * kk + 1][2], sacc[2 * kk + 1][3]);
#pragma unroll
      for (int dn = 0; dn < D / 16; ++dn) {
        const int mi = lane >> 3;
        const int key = kk * 16 + (mi & 1) * 8 + (lane & 7);
        const int d = dn * 16 + (mi >> 1) * 8;
        uint32_t b[4];
        ldmatrix_x4_trans(b, vs + key * kLd + d);
        Ops::mma(oacc[2 * dn], pa, b[0], b[1]);
        Ops::mma(oacc[2 * dn + 1], pa, b[2], b[3]);
      }
    }
    __syncthreads();  // every warp is done with vs before the next tile's V load

    cur = nxt;
    has = has_next;
  }

  mma::store_rows<D>(p, slot, ra, oacc, m_a, m_b, l_a, l_b, tq);
}

template <typename T, int kWarps>
void launch_mma_warps(const AttnParams& p, int n_splits, cudaStream_t s) {
  dim3 grid((p.n_rows + 16 * kWarps - 1) / (16 * kWarps), n_splits);
  if (p.head_dim == 64)
    attn_mma_kernel<T, 64, kWarps><<<grid, kWarps * 32, 0, s>>>(p);
  else
    attn_mma_kernel<T, 128, kWarps><<<grid, kWarps * 32, 0, s>>>(p);
  HI_CUDA_CHECK_LAUNCH("attn_mma_kernel");
}

template <typename T>
void launch_mma_typed(const AttnParams& p, int n_splits, int warps, cudaStream_t s) {
  if (warps == 8)
    launch_mma_warps<T, 8>(p, n_splits, s);
  else
    launch_mma_warps<T, 4>(p, n_splits, s);
}

}  // namespace

bool attention_mma_supported(DType kv, int head_dim) {
  return (kv == DType::BF16 || kv == DType::F16) && (head_dim == 64 || head_dim == 128);
}

int attention_mma_blocks_per_sm(DType kv, int head_dim, int warps) {
  if (warps == kMmaWide) return attention_mma_wide_blocks_per_sm(kv, head_dim);
  if (warps == kMmaWarpgroup || warps == kMmaWarpgroup2)
    return attention_wgmma_blocks_per_sm(kv, head_dim, warps == kMmaWarpgroup2 ? 2 : 1);
  if (!attention_mma_supported(kv, head_dim)) return 1;
  int n = 0;
  auto query = [&](auto kernel) {
    HI_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, warps * 32, 0));
  };
  const bool bf = kv == DType::BF16, d64 = head_dim == 64;
  if (warps == 8) {
    if (bf)
      d64 ? query(attn_mma_kernel<__nv_bfloat16, 64, 8>) : query(attn_mma_kernel<__nv_bfloat16, 128, 8>);
    else
      d64 ? query(attn_mma_kernel<__half, 64, 8>) : query(attn_mma_kernel<__half, 128, 8>);
  } else {
    if (bf)
      d64 ? query(attn_mma_kernel<__nv_bfloat16, 64, 4>) : query(attn_mma_kernel<__nv_bfloat16, 128, 4>);
    else
      d64 ? query(attn_mma_kernel<__half, 64, 4>) : query(attn_mma_kernel<__half, 128, 4>);
  }
  return n < 1 ? 1 : n;
}

int attention_mma_rows(int warps) {
  if (warps == kMmaWarpgroup || warps == kMmaWarpgroup2) return attention_wgmma_rows(warps == kMmaWarpgroup2 ? 2 : 1);
  return warps == kMmaWide ? attention_mma_wide_rows() : warps == 8 ? 128 : 64;
}

void launch_attention_mma(const AttnParams& p, int n_splits, DType kv, int warps, cudaStream_t s) {
  if (warps == kMmaWide) return launch_attention_mma_wide(p, n_splits, kv, s);
  if (warps == kMmaWarpgroup || warps == kMmaWarpgroup2)
    return launch_attention_wgmma(p, n_splits, kv, warps == kMmaWarpgroup2 ? 2 : 1, s);
  if (p.n_rows <= 0) return;
  HI_CHECK(attention_mma_supported(kv, p.head_dim), "cuda attention: no tensor-core kernel for KV "
                                                        << dtype_name(kv) << " with head_dim " << p.head_dim);
  if (kv == DType::BF16)
    launch_mma_typed<__nv_bfloat16>(p, n_splits, warps, s);
  else
    launch_mma_typed<__half>(p, n_splits, warps, s);
}

}  // namespace headinfer::cuda
