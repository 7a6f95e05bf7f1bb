// AVX2+FMA+F16C matmul kernels (the build baseline). A "16-lane vector" is two
// ymm registers so that every output is summed in exactly the order of the
// AVX-512 kernels: the two paths give bit-identical results.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "backend/cpu/kernels_matmul.hpp"

namespace {

struct Avx2 {
  struct V {
    __m256 lo, hi;
  };
  // 16 ymm: 2 tokens x 3 rows x 2 halves = 12 accumulators; activations come
  // in as FMA memory operands.
  static constexpr int kGemmT = 2, kGemmR = 3;
  static constexpr int gemv_rows(int t) { return t == 1 ? 4 : t == 2 ? 3 : t == 3 ? 2 : 1; }

  static V zero() { return {_mm256_setzero_ps(), _mm256_setzero_ps()}; }
  static V fma(V a, V b, V c) { return {_mm256_fmadd_ps(a.lo, b.lo, c.lo), _mm256_fmadd_ps(a.hi, b.hi, c.hi)}; }
  static V load_f32(const float* p) { return {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)}; }
  static V load_f32_tail(const float* p, int n) {
    // 16 all-ones then 16 zeros: the ints at kMask + 16 - n + i select lane i < n.
    alignas(64) static const int32_t kMask[32] = {-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                                  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0};
    const int32_t* m = kMask + 16 - n;
    return {_mm256_maskload_ps(p, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(m))),
            _mm256_maskload_ps(p + 8, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(m + 8)))};
  }
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
  static V load_q8(const int8_t* q, float scale) {
    __m256 s = _mm256_set1_ps(scale);
    __m256 lo = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q))));
    __m256 hi = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + 8))));
    return {_mm256_mul_ps(s, lo), _mm256_mul_ps(s, hi)};
  }
  static void store(float* p, V v) {
    _mm256_storeu_ps(p, v.lo);
    _mm256_storeu_ps(p + 8, v.hi);
  }
  static float hsum(V v) {
    __m256 s = _mm256_add_ps(v.lo, v.hi);
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));
    a = _mm_add_ss(a, _mm_movehdup_ps(a));
    return _mm_cvtss_f32(a);
  }
};

}  // namespace

#include "backend/cpu/kernels_matmul_impl.hpp"

namespace headinfer::cpu_kern {

void gemv_avx2(const MatmulJob& j, int64_t r0, int64_t r1) { gemv_impl<Avx2>(j, r0, r1); }

void gemm_avx2(const MatmulJob& j, int64_t t0, int64_t t1, int64_t r0, int64_t r1, float* scratch) {
  gemm_impl<Avx2>(j, t0, t1, r0, r1, scratch);
}

}  // namespace headinfer::cpu_kern
