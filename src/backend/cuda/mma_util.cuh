// Tensor-core building blocks of the flash-attention kernels (mma.sync m16n8k16,
// ldmatrix, cp.async), shared by the 16-rows-per-warp kernel (attention_prefill.cu)
// and the 32-rows-per-warp one (attention_prefill_wide.cu).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "backend/cuda/attention_common.cuh"
#include "backend/cuda/kernels.hpp"

namespace headinfer::cuda::mma {

constexpr int BN = kMmaKeys;

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte async copy global -> shared; src_bytes 0 zero-fills the destination.
__device__ __forceinline__ void cp_async_16(void* dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}

template <typename T>
struct MmaOps;

template <>
struct MmaOps<__nv_bfloat16> {
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
  }
  static __device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
};

template <>
struct MmaOps<__half> {
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
  }
  static __device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
};

// (a - T(a), b - T(b)) packed in T, given hi = pack(a, b): the low parts of a split
// a = hi + lo, exact to about twice T's mantissa bits.
template <typename T>
__device__ __forceinline__ uint32_t pack_residual(float a, float b, uint32_t hi) {
  T h[2];
  memcpy(h, &hi, sizeof(hi));
  return MmaOps<T>::pack(a - static_cast<float>(h[0]), b - static_cast<float>(h[1]));
}

// Where a block of 16-row warp tiles (bm rows) works: its row tile, the heaviest
// (latest, under causal masking) first; its key split; this thread's two rows ra
// (fragment row g) and rb = ra + 8 and their positions; the block's first and last
// row positions.
struct BlockRows {
  int tq, slot, ra, rb;
  int64_t kbeg, kend, pos_a, pos_b, qmin, qmax;
  __device__ __forceinline__ BlockRows(const AttnParams& p, int bm) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    tq = lane & 3;
    const int r0 = (gridDim.x - 1 - blockIdx.x) * bm;
    const int nr = min(bm, p.n_rows - r0);
    slot = p.slot_base + blockIdx.y;
    const int64_t total = p.pieces.start[p.pieces.n];
    kbeg = static_cast<int64_t>(blockIdx.y) * p.keys_per_split;
    kend = min(total, kbeg + p.keys_per_split);
    ra = r0 + warp * 16 + (lane >> 2);
    rb = ra + 8;
    pos_a = attn_row_pos(p, min(ra, p.n_rows - 1));
    pos_b = attn_row_pos(p, min(rb, p.n_rows - 1));
    qmin = attn_row_pos(p, r0);
    qmax = attn_row_pos(p, r0 + nr - 1);
  }
};

// Calls f(kk, i, x0, x1) for the two f32 q values register i of the A fragment of k-step
// kk holds, for this thread's rows ra and rb of a 16-row tile (head_dim D, query rows at
// q as p lays them out); rows past n_rows give zeros.
template <int D, typename F>
__device__ __forceinline__ void for_q_fragments(const AttnParams& p, const float* q, int ra, int rb, int tq, F&& f) {
  const float* qa = ra < p.n_rows ? q + (ra / p.n_qh) * p.q_stride + static_cast<int64_t>(ra % p.n_qh) * D : nullptr;
  const float* qb = rb < p.n_rows ? q + (rb / p.n_qh) * p.q_stride + static_cast<int64_t>(rb % p.n_qh) * D : nullptr;
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    const int c0 = kk * 16 + tq * 2, c1 = c0 + 8;
    const float* src[4] = {qa ? qa + c0 : nullptr, qb ? qb + c0 : nullptr, qa ? qa + c1 : nullptr,
                           qb ? qb + c1 : nullptr};
#pragma unroll
    for (int i = 0; i < 4; ++i) f(kk, i, src[i] ? src[i][0] : 0.f, src[i] ? src[i][1] : 0.f);
  }
}

// Q fragments (A operand, rounded to T) of this thread's rows ra and rb of a 16-row
// tile, for head_dim D; rows past n_rows are zero.
template <typename T, int D>
__device__ __forceinline__ void load_q(const AttnParams& p, int ra, int rb, int tq, uint32_t (&qf)[D / 16][4]) {
  for_q_fragments<D>(p, p.q, ra, rb, tq,
                     [&](int kk, int i, float x0, float x1) { qf[kk][i] = MmaOps<T>::pack(x0, x1); });
}

// Copies the tile's rows (count of them, the rest zero) into a [BN][D + 8] buffer.
// Each thread copies the same 16-byte column of rows r0, r0 + kPass, ...: its addresses
// are one base plus constant offsets, so a full tile is BN / kPass copy instructions a
// thread (a generic strided loop cost about 25 instructions a copy).
template <typename T, int D, int kThreads>
__device__ __forceinline__ void load_tile(T* dst, const T* src, int count) {
  constexpr int kChunks = D / 8;  // 16-byte chunks per row
  constexpr int kLd = D + 8;
  constexpr int kPass = kThreads / kChunks;  // rows per pass of the block
  static_assert(kThreads % kChunks == 0 && BN % kPass == 0, "a pass covers whole rows of the tile");
  const int r0 = threadIdx.x / kChunks, col = (threadIdx.x % kChunks) * 8;
  T* d = dst + r0 * kLd + col;
  const T* s = src + static_cast<int64_t>(r0) * D + col;
  if (count == BN) {
#pragma unroll
    for (int i = 0; i < BN / kPass; ++i) cp_async_16(d + i * kPass * kLd, s + i * kPass * D, 16);
  } else {
#pragma unroll
    for (int i = 0; i < BN / kPass; ++i) {
      const bool in = r0 + i * kPass < count;
      cp_async_16(d + i * kPass * kLd, in ? s + i * kPass * D : src, in ? 16 : 0);
    }
  }
}

// The online softmax of one m16 tile over NJ * 8 keys (a key tile, or a warp's part of
// one), in place: S (the QK^T accumulators) is scaled to the log2 domain, masked (keys
// past `count`; under causality keys after the row's position, with positions of any
// integer type relative to one origin: kpos the tile's first key, pos_a / pos_b this
// thread's rows g and g + 8), turned into P = exp2(S - running max), and the running
// max, the per-thread partial sums l and the output accumulators O are rescaled to it.
// Rows a are elements 0, 1 of each accumulator, rows b elements 2, 3. The caller must
// have the whole warp here (the skip test is a warp vote).
// kScaleInExp: the maxima are taken over raw S and each P is exp2(fma(S, scale, -max)),
// one instruction where a multiply and a subtract were (as FlashAttention-2; the
// values differ from the unfused form by a rounding). The warpgroup kernel keeps the
// unfused form: its register pinning is sensitive to any change of its code.
template <int D, int NJ, typename Pos, bool kScaleInExp = true>
__device__ __forceinline__ void softmax_step(float (&s)[NJ][4], float (&o)[D / 8][4], float& m_a, float& m_b,
                                             float& l_a, float& l_b, float scale_log2, bool unmasked, int count,
                                             bool causal, Pos kpos, Pos pos_a, Pos pos_b, int tq,
                                             bool skip_unit_rescale = false) {
  float mx_a = -INFINITY, mx_b = -INFINITY;
  // The mask as a loop of its own under one branch: inside the maxima loop the
  // compiler kept a branch per score, 64 taken branches a tile on unmasked tiles
  // (about a tenth of the wide prefill kernel's stall samples). Masking before the
  // maxima gives the same values (-inf either way).
  if constexpr (kScaleInExp) {
    if (!unmasked) {
#pragma unroll
      for (int j = 0; j < NJ; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int n = j * 8 + tq * 2 + (e & 1);
          if (n >= count || (causal && kpos + n > (e < 2 ? pos_a : pos_b))) s[j][e] = -INFINITY;
        }
    }
  }
#pragma unroll
  for (int j = 0; j < NJ; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      float sv = kScaleInExp ? s[j][e] : s[j][e] * scale_log2;
      if (!kScaleInExp && !unmasked) {  // the warpgroup kernel's code as it was
        const int n = j * 8 + tq * 2 + (e & 1);
        const bool masked = n >= count || (causal && kpos + n > (e < 2 ? pos_a : pos_b));
        if (masked) sv = -INFINITY;
      }
      s[j][e] = sv;
      if (e < 2)
        mx_a = fmaxf(mx_a, sv);
      else
        mx_b = fmaxf(mx_b, sv);
    }
  }
  mx_a = fmaxf(mx_a, __shfl_xor_sync(0xffffffffu, mx_a, 1));
  mx_a = fmaxf(mx_a, __shfl_xor_sync(0xffffffffu, mx_a, 2));
  mx_b = fmaxf(mx_b, __shfl_xor_sync(0xffffffffu, mx_b, 1));
  mx_b = fmaxf(mx_b, __shfl_xor_sync(0xffffffffu, mx_b, 2));
  if constexpr (kScaleInExp) {
    mx_a *= scale_log2;
    mx_b *= scale_log2;
  }
  const float mn_a = fmaxf(m_a, mx_a), mn_b = fmaxf(m_b, mx_b);
  const float mu_a = mn_a == -INFINITY ? 0.f : mn_a;
  const float mu_b = mn_b == -INFINITY ? 0.f : mn_b;
  const float alpha_a = exp2f(m_a - mu_a), alpha_b = exp2f(m_b - mu_b);
  m_a = mn_a;
  m_b = mn_b;
  float sum_a = 0.f, sum_b = 0.f;
#pragma unroll
  for (int j = 0; j < NJ; ++j) {
    if constexpr (kScaleInExp) {
      s[j][0] = exp2f(fmaf(s[j][0], scale_log2, -mu_a));
      s[j][1] = exp2f(fmaf(s[j][1], scale_log2, -mu_a));
      s[j][2] = exp2f(fmaf(s[j][2], scale_log2, -mu_b));
      s[j][3] = exp2f(fmaf(s[j][3], scale_log2, -mu_b));
    } else {
      s[j][0] = exp2f(s[j][0] - mu_a);
      s[j][1] = exp2f(s[j][1] - mu_a);
      s[j][2] = exp2f(s[j][2] - mu_b);
      s[j][3] = exp2f(s[j][3] - mu_b);
    }
    sum_a += s[j][0] + s[j][1];
    sum_b += s[j][2] + s[j][3];
  }
  l_a = l_a * alpha_a + sum_a;  // per-thread partial sums; reduced over the quad at the end
  l_b = l_b * alpha_b + sum_b;
  // Once the running maxima settle every alpha is exactly 1: a warp may then skip the
  // D / 2 multiplies (the same bits).
  if (skip_unit_rescale && !__any_sync(0xffffffffu, alpha_a != 1.f || alpha_b != 1.f)) return;
#pragma unroll
  for (int i = 0; i < D / 8; ++i) {
    o[i][0] *= alpha_a;
    o[i][1] *= alpha_a;
    o[i][2] *= alpha_b;
    o[i][3] *= alpha_b;
  }
}

// One m16 tile's rows ra and ra + 8 (those before n_rows): O / l to the output and the
// natural-log log-sum-exp, after reducing l over the quad.
template <int D>
__device__ __forceinline__ void store_rows(const AttnParams& p, int slot, int ra, const float (&o)[D / 8][4], float m_a,
                                           float m_b, float l_a, float l_b, int tq) {
  constexpr float kLn2 = 0.69314718055994531f;
  l_a += __shfl_xor_sync(0xffffffffu, l_a, 1);
  l_a += __shfl_xor_sync(0xffffffffu, l_a, 2);
  l_b += __shfl_xor_sync(0xffffffffu, l_b, 1);
  l_b += __shfl_xor_sync(0xffffffffu, l_b, 2);
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int r = ra + 8 * half;
    if (r >= p.n_rows) continue;
    const float l = half ? l_b : l_a;
    const float m = half ? m_b : m_a;
    const bool any = l > 0.f;
    const float inv = any ? 1.0f / l : 0.f;
    float* orow = attn_out_row(p, slot, r);
#pragma unroll
    for (int i = 0; i < D / 8; ++i) {
      const int d = i * 8 + tq * 2;
      orow[d] = o[i][half * 2] * inv;
      orow[d + 1] = o[i][half * 2 + 1] * inv;
    }
    float* lp = attn_lse_at(p, slot, r);
    if (lp && tq == 0) *lp = any ? (m + log2f(l)) * kLn2 : -INFINITY;
  }
}

}  // namespace headinfer::cuda::mma
