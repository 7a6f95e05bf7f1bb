// Internal: the matmul kernels written once over an ISA traits class I, included
// by kernels_matmul_avx2.cpp and kernels_matmul_avx512.cpp (after their target
// pragma). Everything here has internal linkage so that the two compilations,
// made for different ISAs, can never be merged by the linker.
//
// I provides a 16-lane f32 vector V (one zmm, or two ymm) and: zero, fma,
// load_f32(p) / load_f32_tail(p, n), load_bf16 / _tail, load_f16 / _tail (u16
// pointers), load_q8(int8 pointer, scale), store(p, V), hsum(V) (a fixed tree that
// starts with lanes i + i+8), plus tile sizes kGemmT, kGemmR, gemv_rows(T).
//
// The accumulation order of one output element is the same in every tile shape:
// lane l sums x[k] * w[k] for k = l, l+16, ... by FMA in increasing k, the tail
// (K % 16 values, zero padded) last, then hsum. This is what makes GEMV, GEMM,
// thread counts and the AVX2/AVX-512 paths agree bit for bit.
#pragma once

// No includes on purpose: the including file has included everything before its
// target pragma (see kernels_matmul_avx512.cpp).

namespace {

using headinfer::DType;
using headinfer::cpu_kern::MatmulJob;

// Weight row loaders: 16 values of row `row` starting at column k, as f32.
template <class I>
struct LoadF32 {
  using V = typename I::V;
  static V load(const uint8_t* row, int64_t k) { return I::load_f32(reinterpret_cast<const float*>(row) + k); }
  static V tail(const uint8_t* row, int64_t k, int n) {
    return I::load_f32_tail(reinterpret_cast<const float*>(row) + k, n);
  }
};

template <class I>
struct LoadBF16 {
  using V = typename I::V;
  static V load(const uint8_t* row, int64_t k) { return I::load_bf16(reinterpret_cast<const uint16_t*>(row) + k); }
  static V tail(const uint8_t* row, int64_t k, int n) {
    return I::load_bf16_tail(reinterpret_cast<const uint16_t*>(row) + k, n);
  }
};

template <class I>
struct LoadF16 {
  using V = typename I::V;
  static V load(const uint8_t* row, int64_t k) { return I::load_f16(reinterpret_cast<const uint16_t*>(row) + k); }
  static V tail(const uint8_t* row, int64_t k, int n) {
    return I::load_f16_tail(reinterpret_cast<const uint16_t*>(row) + k, n);
  }
};

// Q8_0 rows are blocks of [f16 scale][32 x int8]; K is a multiple of 32, so a
// 16-value step is always half of one block and there is no tail.
template <class I>
struct LoadQ8 {
  using V = typename I::V;
  static V load(const uint8_t* row, int64_t k) {
    const uint8_t* blk = row + (k >> 5) * 34;
    uint16_t hs;
    __builtin_memcpy(&hs, blk, 2);
    return I::load_q8(reinterpret_cast<const int8_t*>(blk + 2 + (k & 16)), _cvtsh_ss(hs));
  }
  static V tail(const uint8_t* row, int64_t k, int) { return load(row, k); }
};

// out[t * ldo + r] for t < T, r < R: the register tile every path is built from.
template <class I, class L, int T, int R>
inline void tile(const float* x, int64_t ldx, const uint8_t* w, size_t ws, int64_t K, float* out, int64_t ldo) {
  using V = typename I::V;
  V acc[T][R];
#pragma GCC unroll 16
  for (int t = 0; t < T; ++t)
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) acc[t][r] = I::zero();
  int64_t k = 0;
  for (; k + 16 <= K; k += 16) {
    V xv[T];
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t) xv[t] = I::load_f32(x + t * ldx + k);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      V wv = L::load(w + r * ws, k);
#pragma GCC unroll 16
      for (int t = 0; t < T; ++t) acc[t][r] = I::fma(xv[t], wv, acc[t][r]);
    }
  }
  if (k < K) {
    int rem = static_cast<int>(K - k);
    V xv[T];
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t) xv[t] = I::load_f32_tail(x + t * ldx + k, rem);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      V wv = L::tail(w + r * ws, k, rem);
#pragma GCC unroll 16
      for (int t = 0; t < T; ++t) acc[t][r] = I::fma(xv[t], wv, acc[t][r]);
    }
  }
#pragma GCC unroll 16
  for (int t = 0; t < T; ++t)
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) out[t * ldo + r] = I::hsum(acc[t][r]);
}

// T tokens against rows [r0, r1): tiles of R rows, then single rows.
template <class I, class L, int T, int R>
void tile_rows(const float* x, int64_t ldx, const uint8_t* w, size_t ws, int64_t K, int64_t r0, int64_t r1,
               float* out, int64_t ldo) {
  int64_t r = r0;
  for (; r + R <= r1; r += R) tile<I, L, T, R>(x, ldx, w + r * ws, ws, K, out + r, ldo);
  for (; r < r1; ++r) tile<I, L, T, 1>(x, ldx, w + r * ws, ws, K, out + r, ldo);
}

template <class I, class L>
void gemv_typed(const MatmulJob& j, int64_t r0, int64_t r1) {
  for (int t0 = 0; t0 < j.n; t0 += headinfer::cpu_kern::kGemvMaxTile) {
    const float* x = j.x + t0 * j.ldx;
    float* out = j.out + t0 * j.ldo;
    int nt = j.n - t0 < headinfer::cpu_kern::kGemvMaxTile ? j.n - t0 : headinfer::cpu_kern::kGemvMaxTile;
    switch (nt) {
      case 1: tile_rows<I, L, 1, I::gemv_rows(1)>(x, j.ldx, j.w, j.wstride, j.K, r0, r1, out, j.ldo); break;
      case 2: tile_rows<I, L, 2, I::gemv_rows(2)>(x, j.ldx, j.w, j.wstride, j.K, r0, r1, out, j.ldo); break;
      case 3: tile_rows<I, L, 3, I::gemv_rows(3)>(x, j.ldx, j.w, j.wstride, j.K, r0, r1, out, j.ldo); break;
      default: tile_rows<I, L, 4, I::gemv_rows(4)>(x, j.ldx, j.w, j.wstride, j.K, r0, r1, out, j.ldo); break;
    }
  }
}

template <class I>
void gemv_impl(const MatmulJob& j, int64_t r0, int64_t r1) {
  switch (j.dt) {
    case DType::F32: gemv_typed<I, LoadF32<I>>(j, r0, r1); break;
    case DType::BF16: gemv_typed<I, LoadBF16<I>>(j, r0, r1); break;
    case DType::F16: gemv_typed<I, LoadF16<I>>(j, r0, r1); break;
    case DType::Q8_0: gemv_typed<I, LoadQ8<I>>(j, r0, r1); break;
  }
}

// Rows [r0, r1) of w to f32 rows of stride ldd floats.
template <class I, class L>
void convert_rows(const MatmulJob& j, int64_t r0, int64_t r1, float* dst, int64_t ldd) {
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = j.w + r * j.wstride;
    float* d = dst + (r - r0) * ldd;
    int64_t k = 0;
    for (; k + 16 <= j.K; k += 16) I::store(d + k, L::load(row, k));
    // The tail is stored whole (zero padded): the GEMM tile masks it on load anyway.
    if (k < j.K) I::store(d + k, L::tail(row, k, static_cast<int>(j.K - k)));
  }
}

template <class I>
void gemm_impl(const MatmulJob& j, int64_t t0, int64_t t1, int64_t r0, int64_t r1, float* scratch) {
  const uint8_t* w;
  size_t ws;
  if (j.dt == DType::F32) {
    w = j.w + r0 * j.wstride;
    ws = j.wstride;
  } else {
    int64_t ldd = headinfer::cpu_kern::gemm_scratch_stride(j.K);
    switch (j.dt) {
      case DType::BF16: convert_rows<I, LoadBF16<I>>(j, r0, r1, scratch, ldd); break;
      case DType::F16: convert_rows<I, LoadF16<I>>(j, r0, r1, scratch, ldd); break;
      case DType::Q8_0: convert_rows<I, LoadQ8<I>>(j, r0, r1, scratch, ldd); break;
      case DType::F32: break;
    }
    w = reinterpret_cast<const uint8_t*>(scratch);
    ws = static_cast<size_t>(ldd) * 4;
  }
  constexpr int T = I::kGemmT, R = I::kGemmR;
  using L = LoadF32<I>;
  int64_t nr = r1 - r0;
  for (int64_t t = t0; t < t1; t += T) {
    const float* x = j.x + t * j.ldx;
    float* out = j.out + t * j.ldo + r0;
    int64_t nt = t1 - t;
    if (nt >= T) {
      tile_rows<I, L, T, R>(x, j.ldx, w, ws, j.K, 0, nr, out, j.ldo);
    } else if (nt == 3) {
      tile_rows<I, L, 3, R>(x, j.ldx, w, ws, j.K, 0, nr, out, j.ldo);
    } else if (nt == 2) {
      tile_rows<I, L, 2, R>(x, j.ldx, w, ws, j.K, 0, nr, out, j.ldo);
    } else {
      tile_rows<I, L, 1, R>(x, j.ldx, w, ws, j.K, 0, nr, out, j.ldo);
    }
  }
}

}  // namespace
