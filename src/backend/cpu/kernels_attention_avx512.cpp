// AVX-512 (F, BW, VL, DQ) attention kernels, compiled for that ISA by pragma so the
// rest of the binary stays x86-64-v3; attention_cpu.cpp only calls in here after
// checking the CPU. All headers come before the pragma: an inline function
// instantiated under it could otherwise be kept by the linker for callers on
// AVX2-only CPUs.
#include <immintrin.h>

#include <cstdint>

#include "backend/cpu/kernels_attention.hpp"

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
  using M = __mmask16;
  // 32 zmm: the wide tiles hold 8 keys (or dims) x 2 vectors = 16 accumulators,
  // with 2 query (or p) vectors and a broadcast beside them.
  static constexpr int kWideKeys = 8, kWideDims = 8, kNarrowKeys = 4, kNarrowVecs = 8;

  static __mmask16 mask(int n) { return static_cast<__mmask16>((1u << n) - 1u); }
  static V zero() { return _mm512_setzero_ps(); }
  static V set1(float x) { return _mm512_set1_ps(x); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static V load_tail(const float* p, int n) { return _mm512_maskz_loadu_ps(mask(n), p); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V max(V a, V b) { return _mm512_max_ps(a, b); }
  static V min(V a, V b) { return _mm512_min_ps(a, b); }
  static V round(V a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static V pow2i(V n) {
    const __m512i e = _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127));
    return _mm512_castsi512_ps(_mm512_slli_epi32(e, 23));
  }
  static M lt(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
  static M le(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_LE_OQ); }
  static V select(M m, V a, V b) { return _mm512_mask_blend_ps(m, b, a); }
  static float hsum(V v) {
    __m256 lo = _mm512_castps512_ps256(v);
    __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    __m256 s = _mm256_add_ps(lo, hi);
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));
    a = _mm_add_ss(a, _mm_movehdup_ps(a));
    return _mm_cvtss_f32(a);
  }
  static float hmax(V v) { return _mm512_reduce_max_ps(v); }
  static float lane0(V v) { return _mm512_cvtss_f32(v); }
  static V bf16_bits(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }
  static V load_bf16(const uint16_t* p) { return bf16_bits(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
  static V load_bf16_tail(const uint16_t* p, int n) { return bf16_bits(_mm256_maskz_loadu_epi16(mask(n), p)); }
  static V load_f16(const uint16_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static V load_f16_tail(const uint16_t* p, int n) { return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask(n), p)); }
};

}  // namespace

#include "backend/cpu/kernels_attention_impl.hpp"

namespace headinfer::cpu_kern {

void attend_wide_avx512(const AttnArgs& a, const AttnTask& t, float* scratch) { attend_wide<Avx512>(a, t, scratch); }
void attend_narrow_avx512(const AttnArgs& a, const AttnTask& t, float* scratch) {
  attend_narrow<Avx512>(a, t, scratch);
}
void exp_avx512(const float* x, float* y, int n) { exp_n<Avx512>(x, y, n); }

}  // namespace headinfer::cpu_kern

#pragma GCC diagnostic pop
#pragma GCC pop_options
