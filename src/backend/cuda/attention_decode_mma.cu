// Split-KV decode attention on tensor cores, for a few query rows (decode: the n_qh
// heads of a KV group; small chunks) with BF16/F16 KV and head_dim 64 or 128.
//
// Why not the CUDA-core decode kernel (attention_flashdecode.cu): per key it spends
// about 120 warp instructions (an f32 dot product per row, reduced by shuffles over the
// 16 lanes of a key) and it holds its loads in registers, so at 3 blocks per SM too few
// bytes are in flight. Nsight Compute at 128K: 2.3 TB/s, issue slots 52% busy, about
// one eligible warp per scheduler.
//
// Here a block = kWarps warps sharing one 16-row Q tile (rows past n_rows are zero):
//   * key tiles of kMmaKeys keys (never straddling a piece) stream into a ring of
//     kStages shared-memory stages with cp.async, kStages - 1 tiles in flight while one
//     is used: one barrier per tile, no registers held by loads;
//   * warp w takes keys [16 w, 16 w + 16) of every tile: S = Q K^T and O += P V on
//     mma.sync.m16n8k16 with f32 accumulation, its own online softmax (mma_util.cuh);
//   * q and P are split into a high and a low part in the KV dtype (x = hi + lo) and
//     both parts are multiplied, so the products carry about 16 mantissa bits rather
//     than 8 (BF16) at twice the MMAs, which a memory-bound kernel has to spare;
//   * at the end the warps merge through shared memory (the ring, reused) and the
//     block writes its normalised partial output and log-sum-exp.
// Same contract as the CUDA-core decode kernel: blocks (row tile, split, KV head), the
// split y = keys [y * keys_per_split, ...), every key of it read once for all rows.
//
// kKeysAsM (the default for calls of at most 8 rows; HEADINFER_CUDA_DECODE_KEYS_M=0
// never, =1 always): the keys take the MMA's 16-row M side and the query rows its
// 8-column N side, S^T = K Q^T and O^T += V^T P^T, in 8-row tiles. A GQA group of 4
// query heads fills half of N where it filled a quarter of M, so a tile takes half the
// MMAs and half the softmax work; P^T's B fragments come from S^T's accumulators by
// movmatrix (a transpose of each 8 x 8 quarter in registers). Measured (H200, a group
// of 4): 26% fewer instructions and 152 registers instead of 224, but the kernel only
// 6% faster at 4K keys and 1.5% at 32K: past the first few tiles it waits on memory,
// not on issue.
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
using mma::MmaOps;

constexpr int kWarps = kDecodeWarps;
constexpr int kThreads = kWarps * 32;
constexpr int kStages = 3;
// Query rows of a block: one m16 tile, or with the keys on M one n8 tile.
template <bool kKeysAsM>
constexpr int kRowsOf = kKeysAsM ? 8 : 16;
static_assert(BN == 16 * kWarps, "a key tile is 16 keys per warp");

template <int D>
constexpr int ld() {
  return D + 8;  // padded row: ldmatrix row addresses hit distinct banks
}
// The merge at the end reuses the ring: per warp its rows' O (rows padded so a warp's
// stores of O spread over the banks: float2 pairs of 8 rows x 4 columns, or with the
// keys on M single floats of 4 rows x 8 columns), m and l; per row the warps' weights,
// the merged sum and the output address.
template <int D, bool kKeysAsM>
constexpr int kMergeLd = D + (kKeysAsM ? 4 : 8);
template <int D, bool kKeysAsM>
struct MergeSpace {
  static constexpr int kRows = kRowsOf<kKeysAsM>;
  static constexpr size_t kO = size_t{kWarps} * kRows * kMergeLd<D, kKeysAsM>;
  static constexpr size_t bytes() { return kRows * sizeof(float*) + (kO + 3 * kWarps * kRows + kRows) * sizeof(float); }
  float** out;  // [kRows], first: pointers want 8-byte alignment
  float* o;     // [kWarps][kRows][kMergeLd]
  float* m;     // [kWarps][kRows]
  float* l;
  float* weight;
  float* sum;  // [kRows]
  __device__ explicit MergeSpace(unsigned char* smem)
      : out(reinterpret_cast<float**>(smem)),
        o(reinterpret_cast<float*>(smem + kRows * sizeof(float*))),
        m(o + kO),
        l(m + kWarps * kRows),
        weight(l + kWarps * kRows),
        sum(weight + kWarps * kRows) {}
};

template <int D, bool kKeysAsM>
constexpr size_t smem_bytes() {
  const size_t ring = size_t{kStages} * 2 * BN * ld<D>() * 2;
  const size_t merge = MergeSpace<D, kKeysAsM>::bytes();
  return ring > merge ? ring : merge;
}

// Q fragments of rows ra and rb (zero past n_rows) from q, one KV head's query rows, as
// high parts (q rounded to T) and low parts (q - hi rounded to T).
template <typename T, int D>
__device__ __forceinline__ void load_q_split(const AttnParams& p, const float* q, int ra, int rb, int tq,
                                             uint32_t (&hi)[D / 16][4], uint32_t (&lo)[D / 16][4]) {
  mma::for_q_fragments<D>(p, q, ra, rb, tq, [&](int kk, int i, float x0, float x1) {
    hi[kk][i] = MmaOps<T>::pack(x0, x1);
    lo[kk][i] = mma::pack_residual<T>(x0, x1, hi[kk][i]);
  });
}

// With the keys on M: Q^T as the B operand, row g of the 8-row tile at r0 (zero past
// n_rows): register 0 of k-step kk holds columns kk * 16 + 2 tq, + 1, register 1 the
// same 8 further; high and low parts as load_q_split.
template <typename T, int D>
__device__ __forceinline__ void load_qt_split(const AttnParams& p, const float* q, int r, int tq,
                                              uint32_t (&hi)[D / 16][2], uint32_t (&lo)[D / 16][2]) {
  const float* qr = r < p.n_rows ? q + (r / p.n_qh) * p.q_stride + static_cast<int64_t>(r % p.n_qh) * D : nullptr;
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk)
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int c = kk * 16 + i * 8 + tq * 2;
      const float x0 = qr ? qr[c] : 0.f, x1 = qr ? qr[c + 1] : 0.f;
      hi[kk][i] = MmaOps<T>::pack(x0, x1);
      lo[kk][i] = mma::pack_residual<T>(x0, x1, hi[kk][i]);
    }
}

// Transposes the 8 x 8 b16 matrix whose row lane / 4, columns 2 (lane % 4) and + 1 this
// lane holds: an accumulator quarter in, a B fragment register out.
__device__ __forceinline__ uint32_t transpose8x8(uint32_t x) {
  uint32_t y;
  asm volatile("movmatrix.sync.aligned.m8n8.trans.b16 %0, %1;\n" : "=r"(y) : "r"(x));
  return y;
}

// The online softmax of a warp's 16 keys with the keys on M, in place: s holds S^T for
// keys g (elements 0, 1) and g + 8 (2, 3) and rows a = 2 tq (elements 0, 2), b = 2 tq + 1
// (1, 3). As mma::softmax_step (maxima over raw scores, P = exp2(fma(S, scale, -max))),
// with the reductions over keys across the lanes of a column (xor 4, 8, 16). o: O^T,
// dims on M, rows a in elements 0, 2, rows b in 1, 3.
template <int D>
__device__ __forceinline__ void softmax_step_keys(float (&s)[4], float (&o)[D / 16][4], float& m_a, float& m_b,
                                                  float& l_a, float& l_b, float scale_log2, bool unmasked, int count,
                                                  bool causal, int64_t kpos, int64_t pos_a, int64_t pos_b, int g) {
  if (!unmasked) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int n = g + (e < 2 ? 0 : 8);
      if (n >= count || (causal && kpos + n > ((e & 1) ? pos_b : pos_a))) s[e] = -INFINITY;
    }
  }
  float mx_a = fmaxf(s[0], s[2]), mx_b = fmaxf(s[1], s[3]);
#pragma unroll
  for (int off = 4; off < 32; off <<= 1) {
    mx_a = fmaxf(mx_a, __shfl_xor_sync(0xffffffffu, mx_a, off));
    mx_b = fmaxf(mx_b, __shfl_xor_sync(0xffffffffu, mx_b, off));
  }
  mx_a *= scale_log2;
  mx_b *= scale_log2;
  const float mn_a = fmaxf(m_a, mx_a), mn_b = fmaxf(m_b, mx_b);
  const float mu_a = mn_a == -INFINITY ? 0.f : mn_a;
  const float mu_b = mn_b == -INFINITY ? 0.f : mn_b;
  const float alpha_a = exp2f(m_a - mu_a), alpha_b = exp2f(m_b - mu_b);
  m_a = mn_a;
  m_b = mn_b;
  s[0] = exp2f(fmaf(s[0], scale_log2, -mu_a));
  s[1] = exp2f(fmaf(s[1], scale_log2, -mu_b));
  s[2] = exp2f(fmaf(s[2], scale_log2, -mu_a));
  s[3] = exp2f(fmaf(s[3], scale_log2, -mu_b));
  l_a = l_a * alpha_a + (s[0] + s[2]);  // per-lane partial sums; reduced over the column at the end
  l_b = l_b * alpha_b + (s[1] + s[3]);
  if (!__any_sync(0xffffffffu, alpha_a != 1.f || alpha_b != 1.f)) return;  // settled maxima: the same bits
#pragma unroll
  for (int i = 0; i < D / 16; ++i) {
    o[i][0] *= alpha_a;
    o[i][1] *= alpha_b;
    o[i][2] *= alpha_a;
    o[i][3] *= alpha_b;
  }
}

template <typename T, int D, bool kKeysAsM>
__global__ void __launch_bounds__(kThreads) attn_decode_mma_kernel(const AttnParams p) {
  using Ops = MmaOps<T>;
  constexpr int kRows = kRowsOf<kKeysAsM>;
  constexpr int kLd = ld<D>();
  constexpr int kTile = BN * kLd;  // elements of one K (or V) tile
  extern __shared__ __align__(16) unsigned char smem[];
  T* ring = reinterpret_cast<T*>(smem);  // stage s: K at ring + 2 s kTile, V after it

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, tq = lane & 3, g = lane >> 2;
  const int r0 = blockIdx.x * kRows;
  const int nr = min(kRows, p.n_rows - r0);
  const int head = blockIdx.z;
  const int slot = p.slot_base + blockIdx.y;
  const int64_t total = p.pieces.start[p.pieces.n];
  const int64_t kbeg = static_cast<int64_t>(blockIdx.y) * p.keys_per_split;
  const int64_t kend = min(total, kbeg + p.keys_per_split);
  // This thread's two rows: g and g + 8, or with the keys on M (rows on N) 2 tq and 2 tq + 1.
  const int ra = kKeysAsM ? r0 + 2 * tq : r0 + g, rb = kKeysAsM ? ra + 1 : ra + 8;
  const int64_t pos_a = attn_row_pos(p, min(ra, p.n_rows - 1)), pos_b = attn_row_pos(p, min(rb, p.n_rows - 1));
  const int64_t qmin = attn_row_pos(p, r0), qmax = attn_row_pos(p, r0 + nr - 1);

  // Two walkers over the same tiles: one issues the copies kStages - 1 tiles ahead, the
  // other names the tile being used (the walk is deterministic, so no tile queue).
  TileWalker<BN> ahead(p, kbeg, kend, qmax), walker(p, kbeg, kend, qmax);
  // Where the tile `ahead` returned last starts in K (V: the same offset from v).
  auto tile_offset = [&](const KeyTile& t) { return head * ahead.head_stride + t.local * D; };
  auto load_stage = [&](int s, const T* k, const T* v, int count) {
    T* ks = ring + 2 * s * kTile;
    mma::load_tile<T, D, kThreads>(ks, k, count);
    mma::load_tile<T, D, kThreads>(ks + kTile, v, count);
  };
  KeyTile t, cur, first[kStages - 1];
  const T* first_k[kStages - 1];
  const T* first_v[kStages - 1];
  bool have[kStages - 1];
  bool settled = true;
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    have[s] = ahead.advance(first[s]);
    // The pointers now: the next advance may move `ahead` to another piece.
    first_k[s] = have[s] ? static_cast<const T*>(ahead.k) + tile_offset(first[s]) : nullptr;
    first_v[s] = have[s] ? static_cast<const T*>(ahead.v) + tile_offset(first[s]) : nullptr;
    settled = settled && (!have[s] || first[s].pos + first[s].count <= p.settled_pos);
  }
  auto load_first = [&] {
#pragma unroll
    for (int s = 0; s < kStages - 1; ++s) {
      if (have[s]) load_stage(s, first_k[s], first_v[s], first[s].count);
      cp_async_commit();  // empty groups too: the wait below counts groups
    }
  };
  // Under programmatic dependent launch this grid may start while the previous kernel
  // of the stream finishes (no-ops otherwise). Keys that kernel cannot have written
  // (settled_pos) are copied before the wait: the first tiles' latency hides behind it.
  if (settled) load_first();
  pdl_wait();
  pdl_launch_dependents();
  if (!settled) load_first();
  // q after the first tiles' copies are issued: its load latency hides behind theirs.
  constexpr int kQRegs = kKeysAsM ? 2 : 4;
  constexpr int kOTiles = kKeysAsM ? D / 16 : D / 8;  // O (rows x 8 dims) or O^T (16 dims x rows) tiles
  uint32_t qhi[D / 16][kQRegs], qlo[D / 16][kQRegs];
  if constexpr (kKeysAsM)
    load_qt_split<T, D>(p, p.q + head * p.q_head_stride, r0 + g, tq, qhi, qlo);
  else
    load_q_split<T, D>(p, p.q + head * p.q_head_stride, ra, rb, tq, qhi, qlo);
  float oacc[kOTiles][4];
#pragma unroll
  for (int i = 0; i < kOTiles; ++i) oacc[i][0] = oacc[i][1] = oacc[i][2] = oacc[i][3] = 0.f;
  float m_a = -INFINITY, m_b = -INFINITY, l_a = 0.f, l_b = 0.f;

  int stage = 0;
  while (walker.advance(cur)) {
    cp_async_wait<kStages - 2>();  // this tile has landed (for this thread's copies) ...
    __syncthreads();               // ... and for every thread's; the stage before is free
    if (ahead.advance(t))
      load_stage(stage == 0 ? kStages - 1 : stage - 1, static_cast<const T*>(ahead.k) + tile_offset(t),
                 static_cast<const T*>(ahead.v) + tile_offset(t), t.count);
    cp_async_commit();

    const int first = warp * 16;
    const int count = cur.count - first;  // this warp's keys in the tile (<= 0: none)
    if (count > 0) {
      const T* ks = ring + 2 * stage * kTile + first * kLd;
      const T* vs = ks + kTile;
      const int mi = lane >> 3;
      const int64_t kpos = cur.pos + first;
      const bool unmasked = count >= 16 && (!p.causal || kpos + 15 <= qmin);
      if constexpr (kKeysAsM) {
        // S^T (16 keys x 8 rows): A = K from the ring, B = Q^T; even and odd k-steps and
        // the high and low parts in four chains.
        float sc[4][4] = {};
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) {
          uint32_t a[4];
          mma::ldmatrix_x4(a, ks + ((mi & 1) * 8 + (lane & 7)) * kLd + kk * 16 + (mi >> 1) * 8);
          Ops::mma(sc[kk & 1], a, qhi[kk][0], qhi[kk][1]);
          Ops::mma(sc[2 + (kk & 1)], a, qlo[kk][0], qlo[kk][1]);
        }
        float st[4];
#pragma unroll
        for (int e = 0; e < 4; ++e) st[e] = (sc[0][e] + sc[1][e]) + (sc[2][e] + sc[3][e]);
        softmax_step_keys<D>(st, oacc, m_a, m_b, l_a, l_b, p.scale_log2, unmasked, count, p.causal != 0, kpos, pos_a,
                             pos_b, g);
        // P^T as B: keys 0-7 and 8-15 of this warp, the accumulator quarters transposed.
        const uint32_t h0 = Ops::pack(st[0], st[1]), h1 = Ops::pack(st[2], st[3]);
        const uint32_t bh0 = transpose8x8(h0), bh1 = transpose8x8(h1);
        const uint32_t bl0 = transpose8x8(mma::pack_residual<T>(st[0], st[1], h0));
        const uint32_t bl1 = transpose8x8(mma::pack_residual<T>(st[2], st[3], h1));
#pragma unroll
        for (int i = 0; i < D / 16; ++i) {
          uint32_t a[4];  // V^T, dims 16 i .. 16 i + 15
          mma::ldmatrix_x4_trans(a, vs + ((mi >> 1) * 8 + (lane & 7)) * kLd + i * 16 + (mi & 1) * 8);
          Ops::mma(oacc[i], a, bh0, bh1);
          Ops::mma(oacc[i], a, bl0, bl1);
        }
      } else {
        // The high and low parts accumulate apart: four chains of D / 16 dependent MMAs
        // rather than two of D / 8.
        float sacc[2][4] = {}, slo[2][4] = {};
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) {
          uint32_t b[4];
          mma::ldmatrix_x4(b, ks + ((mi >> 1) * 8 + (lane & 7)) * kLd + kk * 16 + (mi & 1) * 8);
          Ops::mma(sacc[0], qhi[kk], b[0], b[1]);
          Ops::mma(sacc[1], qhi[kk], b[2], b[3]);
          Ops::mma(slo[0], qlo[kk], b[0], b[1]);
          Ops::mma(slo[1], qlo[kk], b[2], b[3]);
        }
#pragma unroll
        for (int j = 0; j < 2; ++j)
#pragma unroll
          for (int e = 0; e < 4; ++e) sacc[j][e] += slo[j][e];
        mma::softmax_step<D>(sacc, oacc, m_a, m_b, l_a, l_b, p.scale_log2, unmasked, count, p.causal != 0, kpos, pos_a,
                             pos_b, tq, /*skip_unit_rescale=*/true);
        uint32_t phi[4], plo[4];
        phi[0] = Ops::pack(sacc[0][0], sacc[0][1]);
        phi[1] = Ops::pack(sacc[0][2], sacc[0][3]);
        phi[2] = Ops::pack(sacc[1][0], sacc[1][1]);
        phi[3] = Ops::pack(sacc[1][2], sacc[1][3]);
        plo[0] = mma::pack_residual<T>(sacc[0][0], sacc[0][1], phi[0]);
        plo[1] = mma::pack_residual<T>(sacc[0][2], sacc[0][3], phi[1]);
        plo[2] = mma::pack_residual<T>(sacc[1][0], sacc[1][1], phi[2]);
        plo[3] = mma::pack_residual<T>(sacc[1][2], sacc[1][3], phi[3]);
#pragma unroll
        for (int dn = 0; dn < D / 16; ++dn) {
          uint32_t b[4];
          mma::ldmatrix_x4_trans(b, vs + ((mi & 1) * 8 + (lane & 7)) * kLd + dn * 16 + (mi >> 1) * 8);
          Ops::mma(oacc[2 * dn], phi, b[0], b[1]);
          Ops::mma(oacc[2 * dn + 1], phi, b[2], b[3]);
          Ops::mma(oacc[2 * dn], plo, b[0], b[1]);
          Ops::mma(oacc[2 * dn + 1], plo, b[2], b[3]);
        }
      }
    }
    stage = stage + 1 == kStages ? 0 : stage + 1;
  }
  cp_async_wait<0>();
  __syncthreads();  // the ring is free: the warps merge through it

  // The warps merge: each stores its rows' O (only rows that exist), m and l; then one
  // thread a row weighs the warps (exp2(m_w - max)) and finds the row's sum, output
  // address and log-sum-exp; then every thread merges columns. Weights and sums are
  // per row, not per value, and no integer division is left in the per-value loop:
  // this epilogue was a quarter of a 4K decode kernel's instructions when each value
  // recomputed them.
  MergeSpace<D, kKeysAsM> ms(smem);
  constexpr int kLdO = kMergeLd<D, kKeysAsM>;
  if constexpr (kKeysAsM) {
    // l over the 8 lanes of a column (the keys); m is already the same across them.
#pragma unroll
    for (int off = 4; off < 32; off <<= 1) {
      l_a += __shfl_xor_sync(0xffffffffu, l_a, off);
      l_b += __shfl_xor_sync(0xffffffffu, l_b, off);
    }
    const int la = 2 * tq, lb = la + 1;  // rows within the tile
    float* oa = ms.o + (warp * kRows + la) * kLdO + g;
    float* ob = oa + kLdO;
#pragma unroll
    for (int i = 0; i < D / 16; ++i) {
      if (la < nr) {
        oa[i * 16] = oacc[i][0];
        oa[i * 16 + 8] = oacc[i][2];
      }
      if (lb < nr) {
        ob[i * 16] = oacc[i][1];
        ob[i * 16 + 8] = oacc[i][3];
      }
    }
    if (g == 0) {
      ms.m[warp * kRows + la] = m_a;
      ms.m[warp * kRows + lb] = m_b;
      ms.l[warp * kRows + la] = l_a;
      ms.l[warp * kRows + lb] = l_b;
    }
  } else {
    l_a += __shfl_xor_sync(0xffffffffu, l_a, 1);
    l_a += __shfl_xor_sync(0xffffffffu, l_a, 2);
    l_b += __shfl_xor_sync(0xffffffffu, l_b, 1);
    l_b += __shfl_xor_sync(0xffffffffu, l_b, 2);
    float* oa = ms.o + (warp * kRows + g) * kLdO;
    float* ob = oa + 8 * kLdO;
    if (g < nr) {
#pragma unroll
      for (int i = 0; i < D / 8; ++i)
        *reinterpret_cast<float2*>(oa + i * 8 + tq * 2) = make_float2(oacc[i][0], oacc[i][1]);
    }
    if (g + 8 < nr) {
#pragma unroll
      for (int i = 0; i < D / 8; ++i)
        *reinterpret_cast<float2*>(ob + i * 8 + tq * 2) = make_float2(oacc[i][2], oacc[i][3]);
    }
    if (tq == 0) {
      ms.m[warp * kRows + g] = m_a;
      ms.m[warp * kRows + g + 8] = m_b;
      ms.l[warp * kRows + g] = l_a;
      ms.l[warp * kRows + g + 8] = l_b;
    }
  }
  __syncthreads();

  if (threadIdx.x < nr) {
    constexpr float kLn2 = 0.69314718055994531f;
    const int r = threadIdx.x;
    float mx = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, ms.m[w * kRows + r]);
    const float mu = mx == -INFINITY ? 0.f : mx;
    float lsum = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const float wt = exp2f(ms.m[w * kRows + r] - mu);
      lsum = fmaf(ms.l[w * kRows + r], wt, lsum);
      ms.weight[w * kRows + r] = wt;
    }
    ms.sum[r] = lsum;
    ms.out[r] = attn_out_row(p, slot, r0 + r) + head * p.q_head_stride;
    float* lp = attn_lse_at(p, slot, r0 + r);
    if (lp) lp[head * p.lse_head_stride] = lsum > 0.f ? (mx + log2f(lsum)) * kLn2 : -INFINITY;
  }
  __syncthreads();

  for (int i = threadIdx.x; i < nr * D; i += kThreads) {
    const int r = i / D, d = i - r * D;
    float acc = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) acc = fmaf(ms.o[(w * kRows + r) * kLdO + d], ms.weight[w * kRows + r], acc);
    const float lsum = ms.sum[r];
    ms.out[r][d] = lsum > 0.f ? acc / lsum : 0.f;
  }
}

template <typename T, int D, bool kKeysAsM>
void allow_smem() {
  allow_dynamic_smem<attn_decode_mma_kernel<T, D, kKeysAsM>>(smem_bytes<D, kKeysAsM>());
}

template <typename T, int D, bool kKeysAsM>
void launch_dim(const AttnParams& p, int n_splits, cudaStream_t s) {
  allow_smem<T, D, kKeysAsM>();
  constexpr int kRows = kRowsOf<kKeysAsM>;
  dim3 grid((p.n_rows + kRows - 1) / kRows, n_splits, p.n_heads > 1 ? p.n_heads : 1);
  launch_maybe_pdl(attn_decode_mma_kernel<T, D, kKeysAsM>, grid, dim3(kThreads), smem_bytes<D, kKeysAsM>(), s, p);
  HI_CUDA_CHECK_LAUNCH("attn_decode_mma_kernel");
}

template <typename T, int D, bool kKeysAsM>
int occupancy_dim() {
  allow_smem<T, D, kKeysAsM>();
  int n = 0;
  HI_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, attn_decode_mma_kernel<T, D, kKeysAsM>, kThreads,
                                                              smem_bytes<D, kKeysAsM>()));
  return n;
}

// Calls f.template run<T, D, kKeysAsM>() for the runtime choice.
template <typename F>
auto dispatch(DType kv, int head_dim, bool keys_as_m, const F& f) {
  if (kv == DType::BF16) {
    if (head_dim == 64)
      return keys_as_m ? f.template run<__nv_bfloat16, 64, true>() : f.template run<__nv_bfloat16, 64, false>();
    return keys_as_m ? f.template run<__nv_bfloat16, 128, true>() : f.template run<__nv_bfloat16, 128, false>();
  }
  if (head_dim == 64) return keys_as_m ? f.template run<__half, 64, true>() : f.template run<__half, 64, false>();
  return keys_as_m ? f.template run<__half, 128, true>() : f.template run<__half, 128, false>();
}

struct Occupancy {
  template <typename T, int D, bool K>
  int run() const {
    return occupancy_dim<T, D, K>();
  }
};

struct Launch {
  const AttnParams& p;
  int n_splits;
  cudaStream_t s;
  template <typename T, int D, bool K>
  void run() const {
    launch_dim<T, D, K>(p, n_splits, s);
  }
};

}  // namespace

int attention_decode_mma_rows(bool keys_as_m) { return keys_as_m ? kRowsOf<true> : kRowsOf<false>; }

int attention_decode_mma_blocks_per_sm(DType kv, int head_dim, bool keys_as_m) {
  const int n = dispatch(kv, head_dim, keys_as_m, Occupancy{});
  return n < 1 ? 1 : n;
}

void launch_attention_decode_mma(const AttnParams& p, int n_splits, DType kv, bool keys_as_m, cudaStream_t s) {
  if (p.n_rows <= 0) return;
  HI_CHECK(p.n_heads <= 65535, "cuda attention: " << p.n_heads << " KV heads in one launch exceed the grid");
  HI_CHECK((kv == DType::BF16 || kv == DType::F16) && (p.head_dim == 64 || p.head_dim == 128),
           "cuda attention: no tensor-core decode kernel for KV " << dtype_name(kv) << " with head_dim " << p.head_dim);
  dispatch(kv, p.head_dim, keys_as_m, Launch{p, n_splits, s});
}

}  // namespace headinfer::cuda
