// cpu_matmul against a double-precision reference over odd shapes, every weight
// dtype, bias dtypes, both regimes (GEMV/GEMM), both ISAs and 1..3 threads; and
// the thread pool it runs on.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend/cpu/matmul.hpp"
#include "common/half.hpp"
#include "common/thread_pool.hpp"
#include "headinfer/error.hpp"

namespace headinfer {
namespace {

// ---- thread pool ----

TEST(ThreadPool, CoversEveryIndexOnce) {
  for (int threads = 1; threads <= 4; ++threads) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.size(), threads);
    for (int64_t n : {1, 2, 3, 5, 64, 1000, 12345}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      pool.parallel_for(n, [&](int64_t b, int64_t e) {
        ASSERT_LE(0, b);
        ASSERT_LT(b, e);
        ASSERT_LE(e, n);
        for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)]++;
      });
      for (auto& h : hits) ASSERT_EQ(h.load(), 1);
      for (auto& h : hits) h = 0;
      pool.parallel_for(n, 7, [&](int64_t b, int64_t e) {
        ASSERT_LE(e - b, 7);
        for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)]++;
      });
      for (auto& h : hits) ASSERT_EQ(h.load(), 1);
    }
  }
}

TEST(ThreadPool, StaticSplitIsContiguousAndBalanced) {
  ThreadPool pool(3);
  std::mutex mu;
  std::vector<std::pair<int64_t, int64_t>> pieces;
  pool.parallel_for(10, [&](int64_t b, int64_t e) {
    std::lock_guard<std::mutex> lk(mu);
    pieces.emplace_back(b, e);
  });
  ASSERT_EQ(pieces.size(), 3u);
  for (auto [b, e] : pieces) EXPECT_TRUE(e - b == 3 || e - b == 4);
}

TEST(ThreadPool, ZeroAndNegativeRangesDoNothing) {
  ThreadPool pool(2);
  int calls = 0;
  pool.parallel_for(0, [&](int64_t, int64_t) { ++calls; });
  pool.parallel_for(-5, 3, [&](int64_t, int64_t) { ++calls; });
  EXPECT_EQ(calls, 0);
}

TEST(ThreadPool, RethrowsWorkerExceptionAndStaysUsable) {
  ThreadPool pool(3);
  for (int rep = 0; rep < 20; ++rep) {
    EXPECT_THROW(pool.parallel_for(300, 1,
                                   [&](int64_t b, int64_t) {
                                     if (b == 150) throw std::runtime_error("boom");
                                   }),
                 std::runtime_error);
    std::atomic<int64_t> sum{0};
    pool.parallel_for(300, [&](int64_t b, int64_t e) { sum += e - b; });
    EXPECT_EQ(sum.load(), 300);
  }
  EXPECT_THROW(pool.parallel_for(3, [](int64_t, int64_t) { HI_FAIL("x"); }), Error);
}

TEST(ThreadPool, NestedCallsRunInline) {
  ThreadPool pool(2);
  std::atomic<int64_t> sum{0};
  pool.parallel_for(4, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i)
      pool.parallel_for(100, [&](int64_t b2, int64_t e2) { sum += e2 - b2; });
  });
  EXPECT_EQ(sum.load(), 400);
}

TEST(ThreadPool, ManyTinyCalls) {
  ThreadPool pool(3, /*spin_us=*/0);  // exercise the sleeping path too
  int64_t total = 0;
  for (int rep = 0; rep < 20000; ++rep) {
    std::atomic<int64_t> s{0};
    pool.parallel_for(3, [&](int64_t b, int64_t e) { s += e - b; });
    total += s.load();
  }
  EXPECT_EQ(total, 60000);
}

// ---- matmul ----

// A weight matrix in some dtype, with its exact f32 values (what the kernels must
// multiply by) produced by the library's own to_f32.
struct Weights {
  DType dt;
  int64_t rows, cols;
  std::vector<uint8_t> bytes;  // + 1 leading byte so the data is deliberately misaligned
  std::vector<float> f32;
  Mat mat() const { return Mat{dt, bytes.data() + 1, rows, cols}; }
};

Weights make_weights(DType dt, int64_t rows, int64_t cols, std::mt19937& rng, bool positive = false) {
  std::uniform_real_distribution<float> dist(positive ? 0.1f : -1.f, 1.f);
  std::vector<float> v(static_cast<size_t>(rows * cols));
  for (auto& f : v) f = dist(rng);
  Weights w{dt, rows, cols, {}, {}};
  size_t nbytes = dtype_bytes(dt, rows * cols);
  w.bytes.assign(nbytes + 1, 0);
  uint8_t* d = w.bytes.data() + 1;
  switch (dt) {
    case DType::F32: std::memcpy(d, v.data(), nbytes); break;
    case DType::BF16:
      for (size_t i = 0; i < v.size(); ++i) {
        uint16_t h = f32_to_bf16(v[i]);
        std::memcpy(d + 2 * i, &h, 2);
      }
      break;
    case DType::F16:
      for (size_t i = 0; i < v.size(); ++i) {
        uint16_t h = f32_to_f16(v[i]);
        std::memcpy(d + 2 * i, &h, 2);
      }
      break;
    case DType::Q8_0:
      for (size_t b = 0; b < v.size() / kQ8_0Block; ++b) {
        float amax = 0.f;
        for (int i = 0; i < kQ8_0Block; ++i) amax = std::max(amax, std::fabs(v[b * kQ8_0Block + i]));
        float scale = amax / 127.f;
        uint16_t hs = f32_to_f16(scale);
        float s = f16_to_f32(hs);
        uint8_t* blk = d + b * kQ8_0BlockBytes;
        std::memcpy(blk, &hs, 2);
        for (int i = 0; i < kQ8_0Block; ++i) {
          float q = s > 0 ? std::nearbyint(v[b * kQ8_0Block + i] / s) : 0.f;
          blk[2 + i] = static_cast<uint8_t>(static_cast<int8_t>(std::clamp(q, -127.f, 127.f)));
        }
      }
      break;
  }
  w.f32.resize(v.size());
  to_f32(dt, d, w.f32.data(), rows * cols);
  return w;
}

std::vector<float> random_vec(size_t n, std::mt19937& rng, bool positive = false) {
  std::uniform_real_distribution<float> dist(positive ? 0.1f : -1.f, 1.f);
  std::vector<float> v(n);
  for (auto& f : v) f = dist(rng);
  return v;
}

// Checks out against a double reference: |out - ref| <= tol * (sum |x w| + |b|),
// the scale of f32 rounding error for a dot product; with positive data (no
// cancellation) this is a plain relative bound.
void expect_close(const std::vector<float>& out, const std::vector<float>& x, int n, const Weights& w,
                  const Weights* bias, double tol, const char* what) {
  for (int t = 0; t < n; ++t) {
    for (int64_t r = 0; r < w.rows; ++r) {
      double ref = 0, mag = 0;
      for (int64_t k = 0; k < w.cols; ++k) {
        double p = static_cast<double>(x[t * w.cols + k]) * w.f32[r * w.cols + k];
        ref += p;
        mag += std::fabs(p);
      }
      if (bias) {
        ref += bias->f32[r];
        mag += std::fabs(bias->f32[r]);
      }
      float got = out[t * w.rows + r];
      ASSERT_FALSE(std::isnan(got)) << what << " t=" << t << " r=" << r;
      ASSERT_LE(std::fabs(got - ref), tol * mag + 1e-30)
          << what << " t=" << t << " r=" << r << " got " << got << " want " << ref;
    }
  }
}

std::vector<float> run(ThreadPool& pool, const std::vector<float>& x, int n, const Weights& w, const Weights* bias) {
  std::vector<float> out(static_cast<size_t>(n * w.rows), std::numeric_limits<float>::quiet_NaN());
  Mat bm = bias ? bias->mat() : Mat{};
  cpu_matmul(pool, x.data(), n, w.mat(), bias ? &bm : nullptr, out.data());
  return out;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
}

std::vector<CpuIsa> isas() {
  std::vector<CpuIsa> v{CpuIsa::Avx2};
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
    v.push_back(CpuIsa::Avx512);
  return v;
}

struct IsaReset {
  ~IsaReset() {
    cpu_matmul_set_isa(CpuIsa::Auto);
    cpu_matmul_set_gemv_max_tokens(4);
  }
};

TEST(CpuMatmul, MatchesDoubleReferenceAllDtypesShapesThreads) {
  IsaReset reset;
  std::mt19937 rng(1234);
  ThreadPool pools[3] = {ThreadPool(1), ThreadPool(2), ThreadPool(3)};
  const DType dtypes[] = {DType::F32, DType::BF16, DType::F16, DType::Q8_0};
  const int64_t row_counts[] = {1, 7, 37, 100};
  const int64_t float_cols[] = {1, 5, 17, 100, 515};
  const int64_t q8_cols[] = {32, 96, 544};
  const int ns[] = {1, 2, 3, 4, 5, 7, 64, 129};
  int cases = 0;
  for (DType dt : dtypes) {
    for (int64_t rows : row_counts) {
      const int64_t* cols_list = dt == DType::Q8_0 ? q8_cols : float_cols;
      int n_cols = dt == DType::Q8_0 ? 3 : 5;
      for (int ci = 0; ci < n_cols; ++ci) {
        int64_t cols = cols_list[ci];
        Weights w = make_weights(dt, rows, cols, rng);
        Weights bias = make_weights(cases % 2 ? DType::BF16 : DType::F32, 1, rows, rng);
        for (int n : ns) {
          std::vector<float> x = random_vec(static_cast<size_t>(n * cols), rng);
          for (bool with_bias : {false, true}) {
            const Weights* b = with_bias ? &bias : nullptr;
            std::vector<float> first;
            for (CpuIsa isa : isas()) {
              cpu_matmul_set_isa(isa);
              for (auto& pool : pools) {
                std::vector<float> out = run(pool, x, n, w, b);
                std::string what = std::string(dtype_name(dt)) + " [" + std::to_string(rows) + "x" +
                                   std::to_string(cols) + "] n=" + std::to_string(n) + " bias=" +
                                   std::to_string(with_bias) + " isa=" + cpu_isa_name(isa) +
                                   " threads=" + std::to_string(pool.size());
                expect_close(out, x, n, w, b, 1e-5, what.c_str());
                // Same bits for every ISA, thread count and repeat.
                if (first.empty())
                  first = out;
                else
                  ASSERT_TRUE(same_bits(first, out)) << what;
                ASSERT_TRUE(same_bits(out, run(pool, x, n, w, b))) << what << " (repeat)";
                ++cases;
              }
            }
          }
        }
      }
    }
  }
  EXPECT_GT(cases, 1000);
}

// Positive data has no cancellation, so this is the plain relative bound of the
// spec: within 1e-5 of the double result for F32 weights.
TEST(CpuMatmul, F32RelativeErrorBelow1e5) {
  std::mt19937 rng(7);
  ThreadPool pool(2);
  for (int64_t cols : {1000, 4099}) {
    Weights w = make_weights(DType::F32, 45, cols, rng, /*positive=*/true);
    for (int n : {1, 9}) {
      std::vector<float> x = random_vec(static_cast<size_t>(n * cols), rng, true);
      std::vector<float> out = run(pool, x, n, w, nullptr);
      for (int t = 0; t < n; ++t)
        for (int64_t r = 0; r < w.rows; ++r) {
          double ref = 0;
          for (int64_t k = 0; k < cols; ++k) ref += static_cast<double>(x[t * cols + k]) * w.f32[r * cols + k];
          ASSERT_LE(std::fabs(out[t * w.rows + r] - ref), 1e-5 * std::fabs(ref));
        }
    }
  }
}

// A token's outputs do not depend on the batch it is in: GEMV (decode) and GEMM
// (prefill) agree bit for bit.
TEST(CpuMatmul, GemvAndGemmAgreeBitForBit) {
  IsaReset reset;
  std::mt19937 rng(99);
  ThreadPool pool(2);
  for (DType dt : {DType::F32, DType::BF16, DType::F16, DType::Q8_0}) {
    Weights w = make_weights(dt, 131, 608, rng);
    std::vector<float> x = random_vec(static_cast<size_t>(19 * 608), rng);
    cpu_matmul_set_gemv_max_tokens(1);
    std::vector<float> gemm = run(pool, x, 19, w, nullptr);
    for (int t = 0; t < 19; ++t) {
      std::vector<float> xt(x.begin() + t * 608, x.begin() + (t + 1) * 608);
      std::vector<float> one = run(pool, xt, 1, w, nullptr);
      ASSERT_EQ(std::memcmp(one.data(), gemm.data() + t * 131, 131 * 4), 0) << dtype_name(dt) << " t=" << t;
    }
    cpu_matmul_set_gemv_max_tokens(100);  // 19 tokens as GEMV in groups of 4
    ASSERT_TRUE(same_bits(gemm, run(pool, x, 19, w, nullptr))) << dtype_name(dt);
  }
}

TEST(CpuMatmul, NaNAndInfPropagate) {
  std::mt19937 rng(5);
  ThreadPool pool(2);
  Weights w = make_weights(DType::BF16, 9, 40, rng);
  std::vector<float> x = random_vec(2 * 40, rng);
  x[3] = std::numeric_limits<float>::quiet_NaN();
  x[40 + 39] = std::numeric_limits<float>::infinity();
  std::vector<float> out = run(pool, x, 2, w, nullptr);
  for (int r = 0; r < 9; ++r) {
    EXPECT_TRUE(std::isnan(out[r]));
    EXPECT_FALSE(std::isfinite(out[9 + r]));
  }
}

TEST(CpuMatmul, ZeroTokensWritesNothing) {
  std::mt19937 rng(5);
  ThreadPool pool(2);
  Weights w = make_weights(DType::F32, 3, 8, rng);
  float out = 42.f;
  cpu_matmul(pool, nullptr, 0, w.mat(), nullptr, &out);
  EXPECT_EQ(out, 42.f);
}

TEST(CpuMatmul, RejectsBadShapes) {
  std::mt19937 rng(5);
  ThreadPool pool(1);
  Weights w = make_weights(DType::F32, 4, 64, rng);
  std::vector<float> x(64), out(4);
  Mat q8{DType::Q8_0, w.bytes.data(), 4, 48};
  EXPECT_THROW(cpu_matmul(pool, x.data(), 1, q8, nullptr, out.data()), Error);
  Weights b = make_weights(DType::F32, 1, 5, rng);
  Mat bm = b.mat();
  EXPECT_THROW(cpu_matmul(pool, x.data(), 1, w.mat(), &bm, out.data()), Error);
  EXPECT_THROW(cpu_matmul(pool, x.data(), 1, Mat{}, nullptr, out.data()), Error);
  EXPECT_THROW(cpu_matmul(pool, x.data(), -1, w.mat(), nullptr, out.data()), Error);
}

TEST(CpuMatmul, BiasInEveryFloatDtype) {
  std::mt19937 rng(11);
  ThreadPool pool(2);
  Weights w = make_weights(DType::BF16, 64, 96, rng);
  std::vector<float> x = random_vec(3 * 96, rng);
  for (DType bt : {DType::F32, DType::F16, DType::BF16, DType::Q8_0}) {
    Weights b = make_weights(bt, 1, 64, rng);
    std::vector<float> out = run(pool, x, 3, w, &b);
    expect_close(out, x, 3, w, &b, 1e-5, dtype_name(bt));
  }
}

// The executor fuses Q/K/V and gate/up into one matrix each: stacking weight rows
// (and converting a bias to f32) changes no output bit, in GEMV and GEMM, on every ISA.
TEST(CpuMatmul, FusedRowsEqualSeparateMatrices) {
  IsaReset reset;
  std::mt19937 rng(21);
  ThreadPool pool(2);
  for (CpuIsa isa : isas()) {
    cpu_matmul_set_isa(isa);
    for (DType dt : {DType::F32, DType::BF16, DType::F16}) {
      const int64_t cols = 160;
      const Weights a = make_weights(dt, 37, cols, rng), b = make_weights(dt, 11, cols, rng);
      const Weights ba = make_weights(DType::BF16, 1, 37, rng), bb = make_weights(DType::BF16, 1, 11, rng);
      Weights fused{dt, 48, cols, std::vector<uint8_t>(1), {}};
      fused.bytes.insert(fused.bytes.end(), a.bytes.begin() + 1, a.bytes.end());
      fused.bytes.insert(fused.bytes.end(), b.bytes.begin() + 1, b.bytes.end());
      Weights fused_bias{DType::F32, 1, 48, std::vector<uint8_t>(1 + 48 * 4), {}};
      std::memcpy(fused_bias.bytes.data() + 1, ba.f32.data(), 37 * 4);
      std::memcpy(fused_bias.bytes.data() + 1 + 37 * 4, bb.f32.data(), 11 * 4);
      for (int n : {1, 3, 40}) {
        const std::vector<float> x = random_vec(static_cast<size_t>(n * cols), rng);
        const std::vector<float> oa = run(pool, x, n, a, &ba), ob = run(pool, x, n, b, &bb);
        const std::vector<float> of = run(pool, x, n, fused, &fused_bias);
        for (int t = 0; t < n; ++t) {
          ASSERT_EQ(0, std::memcmp(of.data() + t * 48, oa.data() + t * 37, 37 * 4)) << dtype_name(dt) << " n=" << n;
          ASSERT_EQ(0, std::memcmp(of.data() + t * 48 + 37, ob.data() + t * 11, 11 * 4)) << dtype_name(dt);
        }
      }
    }
  }
}

// Input rows further apart than the weight's columns give the packed input's bits.
TEST(CpuMatmul, StridedInputEqualsPacked) {
  std::mt19937 rng(22);
  ThreadPool pool(2);
  const int64_t cols = 96, stride = 2 * cols + 5;
  const Weights w = make_weights(DType::BF16, 40, cols, rng);
  for (int n : {1, 6, 30}) {
    const std::vector<float> xs = random_vec(static_cast<size_t>(n * stride), rng);
    std::vector<float> packed(static_cast<size_t>(n * cols));
    for (int t = 0; t < n; ++t)
      std::copy(xs.begin() + t * stride, xs.begin() + t * stride + cols, packed.begin() + t * cols);
    std::vector<float> out(static_cast<size_t>(n * 40));
    cpu_matmul(pool, xs.data(), n, w.mat(), nullptr, out.data(), stride);
    EXPECT_TRUE(same_bits(out, run(pool, packed, n, w, nullptr))) << "n=" << n;
  }
  std::vector<float> out(40);
  EXPECT_THROW(cpu_matmul(pool, out.data(), 1, w.mat(), nullptr, out.data(), cols - 1), Error);
}

}  // namespace
}  // namespace headinfer
