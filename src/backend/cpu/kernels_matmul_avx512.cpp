// AVX-512 (F, BW, VL) matmul kernels, compiled for that ISA by pragma so the rest
// of the binary stays x86-64-v3; matmul.cpp only calls in here after checking
// the CPU. All headers come before the pragma: an inline function instantiated
// under it could otherwise be kept by the linker for callers on AVX2-only CPUs.
#include <immintrin.h>

#include <cstdint>

#include "backend/cpu/kernels_matmul.hpp"

#pragma GCC push_options
// GCC 12 warns on the deliberately undefined vectors inside its own AVX-512
// intrinsics (GCC PR 105593).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq")

namespace {

struct Avx512 {
  using V = __m512;
  // 4 tokens x 6 rows: 24 accumulators + 4 activations + 1 weight of 32 zmm.
  static constexpr int kGemmT = 4, kGemmR = 6;
  static constexpr int gemv_rows(int t) { return t == 1 ? 8 : 6; }

  static V zero() { return _mm512_setzero_ps(); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static __mmask16 mask(int n) { return static_cast<__mmask16>((1u << n) - 1u); }
  static V load_f32(const float* p) { return _mm512_loadu_ps(p); }
  static V load_f32_tail(const float* p, int n) { return _mm512_maskz_loadu_ps(mask(n), p); }
  static V bf16_bits(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }
  static V load_bf16(const uint16_t* p) { return bf16_bits(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
  static V load_bf16_tail(const uint16_t* p, int n) { return bf16_bits(_mm256_maskz_loadu_epi16(mask(n), p)); }
  static V load_f16(const uint16_t* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
  static V load_f16_tail(const uint16_t* p, int n) { return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask(n), p)); }
  static V load_q8(const int8_t* q, float scale) {
    __m512 v = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q))));
    return _mm512_mul_ps(_mm512_set1_ps(scale), v);
  }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static float hsum(V v) {
    __m256 lo = _mm512_castps512_ps256(v);
    __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    __m256 s = _mm256_add_ps(lo, hi);
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));
    a = _mm_add_ss(a, _mm_movehdup_ps(a));
    return _mm_cvtss_f32(a);
  }
};

}  // namespace

#include "backend/cpu/kernels_matmul_impl.hpp"

namespace headinfer::cpu_kern {

void gemv_avx512(const MatmulJob& j, int64_t r0, int64_t r1) { gemv_impl<Avx512>(j, r0, r1); }

void gemm_avx512(const MatmulJob& j, int64_t t0, int64_t t1, int64_t r0, int64_t r1, float* scratch) {
  gemm_impl<Avx512>(j, t0, t1, r0, r1, scratch);
}

}  // namespace headinfer::cpu_kern

#pragma GCC diagnostic pop
#pragma GCC pop_options
