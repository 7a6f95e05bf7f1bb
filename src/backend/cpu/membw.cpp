#include "backend/cpu/membw.hpp"

#include <immintrin.h>
#include <sys/mman.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "headinfer/error.hpp"

namespace headinfer {

namespace {

// Sums 256 bytes per iteration into 8 independent accumulators, so the loop is
// limited by loads, not by add latency. Bytes is a multiple of 256.
float read_sum(const float* p, size_t bytes) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
  for (size_t i = 0; i < bytes / 4; i += 64) {
    a0 = _mm256_add_ps(a0, _mm256_load_ps(p + i));
    a1 = _mm256_add_ps(a1, _mm256_load_ps(p + i + 8));
    a2 = _mm256_add_ps(a2, _mm256_load_ps(p + i + 16));
    a3 = _mm256_add_ps(a3, _mm256_load_ps(p + i + 24));
    a4 = _mm256_add_ps(a4, _mm256_load_ps(p + i + 32));
    a5 = _mm256_add_ps(a5, _mm256_load_ps(p + i + 40));
    a6 = _mm256_add_ps(a6, _mm256_load_ps(p + i + 48));
    a7 = _mm256_add_ps(a7, _mm256_load_ps(p + i + 56));
  }
  __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                           _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
  float out[8];
  _mm256_storeu_ps(out, s);
  return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
}

}  // namespace

double measure_read_bandwidth_gbs(ThreadPool& pool, size_t bytes) {
  constexpr size_t kAlign = size_t{2} << 20;  // huge-page aligned: TLB misses would understate bandwidth
  bytes = (bytes + kAlign - 1) / kAlign * kAlign;
  if (bytes == 0) bytes = kAlign;
  void* mem = std::aligned_alloc(kAlign, bytes);
  if (!mem) HI_FAIL("read bandwidth: cannot allocate " << bytes << " bytes");
  std::unique_ptr<void, void (*)(void*)> guard(mem, std::free);
  madvise(mem, bytes, MADV_HUGEPAGE);  // best effort

  auto* base = static_cast<char*>(mem);
  const int64_t blocks = static_cast<int64_t>(bytes / 256);
  // Each thread first-touches the part it later reads (local pages on NUMA).
  pool.parallel_for(blocks, [&](int64_t b, int64_t e) {
    std::memset(base + b * 256, 1, static_cast<size_t>(e - b) * 256);
  });

  std::atomic<float> sink{0.f};
  double best = 0.0;
  for (int rep = 0; rep < 10; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    pool.parallel_for(blocks, [&](int64_t b, int64_t e) {
      float s = read_sum(reinterpret_cast<const float*>(base + b * 256), static_cast<size_t>(e - b) * 256);
      sink.store(s, std::memory_order_relaxed);  // keeps the reads alive
    });
    double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double gbs = static_cast<double>(bytes) / sec * 1e-9;
    if (gbs > best) best = gbs;
  }
  return best;
}

}  // namespace headinfer
