#include "backend/cpu/membw.hpp"

#include <immintrin.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

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

ReadBandwidthProbe::ReadBandwidthProbe(ThreadPool& pool, size_t bytes) : pool_(pool) {
  constexpr size_t kAlign = size_t{2} << 20;  // huge-page aligned: TLB misses would understate bandwidth
  bytes_ = (bytes + kAlign - 1) / kAlign * kAlign;
  if (bytes_ == 0) bytes_ = kAlign;
  mem_ = static_cast<char*>(std::aligned_alloc(kAlign, bytes_));
  if (!mem_) HI_FAIL("read bandwidth: cannot allocate " << bytes_ << " bytes");
  madvise(mem_, bytes_, MADV_HUGEPAGE);  // best effort
  // Each thread first-touches the part it later reads (local pages on NUMA).
  char* base = mem_;
  pool_.parallel_for(static_cast<int64_t>(bytes_ / 256), [&](int64_t b, int64_t e) {
    std::memset(base + b * 256, 1, static_cast<size_t>(e - b) * 256);
  });
}

ReadBandwidthProbe::~ReadBandwidthProbe() { std::free(mem_); }

double ReadBandwidthProbe::best_gbs(int passes) {
  // A pass reads the buffer as 64 MiB segments (still twice a large L3), each
  // timed alone; its score is the median segment rate. On an idle machine that
  // is the plain streaming rate; on a shared one it discounts segments during
  // which a thread lost its core, as the median over short GEMV calls does, so
  // kernel/bandwidth ratios stay comparable.
  constexpr size_t kSegment = size_t{64} << 20;
  const size_t seg = bytes_ < kSegment ? bytes_ : kSegment;
  const size_t n_seg = bytes_ / seg;
  std::atomic<float> sink{0.f};
  double best = 0.0;
  std::vector<double> rates;
  for (int rep = 0; rep < passes; ++rep) {
    rates.clear();
    for (size_t i = 0; i < n_seg; ++i) {
      const char* base = mem_ + i * seg;
      const int64_t blocks = static_cast<int64_t>(seg / 256);
      auto t0 = std::chrono::steady_clock::now();
      // Pieces handed out on demand, as cpu_matmul does.
      pool_.parallel_for(blocks, blocks / (pool_.size() * 8) + 1, [&](int64_t b, int64_t e) {
        float s = read_sum(reinterpret_cast<const float*>(base + b * 256), static_cast<size_t>(e - b) * 256);
        sink.store(s, std::memory_order_relaxed);  // keeps the reads alive
      });
      double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      rates.push_back(static_cast<double>(seg) / sec * 1e-9);
    }
    std::sort(rates.begin(), rates.end());
    best = std::max(best, rates[rates.size() / 2]);
  }
  return best;
}

double measure_read_bandwidth_gbs(ThreadPool& pool, size_t bytes) {
  ReadBandwidthProbe probe(pool, bytes);
  return probe.best_gbs(10);
}

}  // namespace headinfer
