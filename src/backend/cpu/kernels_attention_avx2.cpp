// AVX2+FMA+F16C attention kernels (the build baseline). A "16-lane vector" is two
// ymm registers so that every value is computed exactly as by the AVX-512 kernels.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "backend/cpu/kernels_attention.hpp"

namespace {

struct Avx2 {
  struct V {
    __m256 lo, hi;
  };
  struct M {
    __m256 lo, hi;
  };
  // 16 ymm: the wide tiles hold 2 keys (or dims) x 2 vectors x 2 halves = 8
  // accumulators next to the 4 halves of query (or p) vectors.
  static constexpr int kWideKeys = 2, kWideDims = 2, kNarrowKeys = 4, kNarrowVecs = 4;

  static V zero() { return {_mm256_setzero_ps(), _mm256_setzero_ps()}; }
  static V set1(float x) { return {_mm256_set1_ps(x), _mm256_set1_ps(x)}; }
  static V load(const float* p) { return {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)}; }
  static void store(float* p, V v) {
    _mm256_storeu_ps(p, v.lo);
    _mm256_storeu_ps(p + 8, v.hi);
  }
  static V load_tail(const float* p, int n) {
    // 16 all-ones then 16 zeros: the ints at kMask + 16 - n + i select lane i < n.
    alignas(64) static const int32_t kMask[32] = {-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                                  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0};
    const int32_t* m = kMask + 16 - n;
    return {_mm256_maskload_ps(p, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(m))),
            _mm256_maskload_ps(p + 8, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(m + 8)))};
  }
  static V add(V a, V b) { return {_mm256_add_ps(a.lo, b.lo), _mm256_add_ps(a.hi, b.hi)}; }
  static V sub(V a, V b) { return {_mm256_sub_ps(a.lo, b.lo), _mm256_sub_ps(a.hi, b.hi)}; }
  static V mul(V a, V b) { return {_mm256_mul_ps(a.lo, b.lo), _mm256_mul_ps(a.hi, b.hi)}; }
  static V fma(V a, V b, V c) { return {_mm256_fmadd_ps(a.lo, b.lo, c.lo), _mm256_fmadd_ps(a.hi, b.hi, c.hi)}; }
  static V max(V a, V b) { return {_mm256_max_ps(a.lo, b.lo), _mm256_max_ps(a.hi, b.hi)}; }
  static V min(V a, V b) { return {_mm256_min_ps(a.lo, b.lo), _mm256_min_ps(a.hi, b.hi)}; }
  static V round(V a) {
    constexpr int r = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
    return {_mm256_round_ps(a.lo, r), _mm256_round_ps(a.hi, r)};
  }
  static __m256 pow2i(__m256 n) {
    const __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
    return _mm256_castsi256_ps(_mm256_slli_epi32(e, 23));
  }
  static V pow2i(V n) { return {pow2i(n.lo), pow2i(n.hi)}; }
  static M lt(V a, V b) { return {_mm256_cmp_ps(a.lo, b.lo, _CMP_LT_OQ), _mm256_cmp_ps(a.hi, b.hi, _CMP_LT_OQ)}; }
  static M le(V a, V b) { return {_mm256_cmp_ps(a.lo, b.lo, _CMP_LE_OQ), _mm256_cmp_ps(a.hi, b.hi, _CMP_LE_OQ)}; }
  static V select(M m, V a, V b) { return {_mm256_blendv_ps(b.lo, a.lo, m.lo), _mm256_blendv_ps(b.hi, a.hi, m.hi)}; }
  static float hsum(V v) {
    __m256 s = _mm256_add_ps(v.lo, v.hi);
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));
    a = _mm_add_ss(a, _mm_movehdup_ps(a));
    return _mm_cvtss_f32(a);
  }
  static float hmax(V v) {
    __m256 s = _mm256_max_ps(v.lo, v.hi);
    __m128 a = _mm_max_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    a = _mm_max_ps(a, _mm_movehl_ps(a, a));
    a = _mm_max_ss(a, _mm_movehdup_ps(a));
    return _mm_cvtss_f32(a);
  }
  static float lane0(V v) { return _mm256_cvtss_f32(v.lo); }
  static __m256 bf16_bits(__m128i h) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  static V load_bf16(const uint16_t* p) {
    return {bf16_bits(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))),
            bf16_bits(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 8)))};
  }
  // AVX2 has no 16-bit masked load: copy the tail into a zeroed block.
  static V load_bf16_tail(const uint16_t* p, int n) {
    uint16_t buf[16] = {};
    std::memcpy(buf, p, static_cast<size_t>(n) * 2);
    return load_bf16(buf);
  }
  static V load_f16(const uint16_t* p) {
    return {_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))),
            _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 8)))};
  }
  static V load_f16_tail(const uint16_t* p, int n) {
    uint16_t buf[16] = {};
    std::memcpy(buf, p, static_cast<size_t>(n) * 2);
    return load_f16(buf);
  }
};

}  // namespace

#include "backend/cpu/kernels_attention_impl.hpp"

namespace headinfer::cpu_kern {

void attend_wide_avx2(const AttnArgs& a, const AttnTask& t, float* scratch) { attend_wide<Avx2>(a, t, scratch); }
void attend_narrow_avx2(const AttnArgs& a, const AttnTask& t, float* scratch) { attend_narrow<Avx2>(a, t, scratch); }
void exp_avx2(const float* x, float* y, int n) { exp_n<Avx2>(x, y, n); }

}  // namespace headinfer::cpu_kern
