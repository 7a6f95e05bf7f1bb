// The tiled CPU attention kernels (wide: query rows in lanes; narrow: head_dim in
// lanes; key splits with merged partials) against a double-precision reference:
// odd head_dims, key and row tile edges, GQA groups 1..32, causal or not, rows that
// see no key, pieces with position gaps, F32 / F16 / BF16 KV. Then the determinism
// the engine relies on: identical bits for pools of 1, 2, 3 threads, for AVX2 and
// AVX-512, and for any split of the rows among cpu_attention_rows calls.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "backend/backend.hpp"
#include "backend/cpu/attention_cpu.hpp"
#include "backend/cpu/kernels_attention.hpp"
#include "backend/cpu/matmul.hpp"
#include "common/half.hpp"
#include "common/thread_pool.hpp"

namespace headinfer {
namespace {

// Shape::q_pos0 for "the last query at the last key's position".
constexpr int64_t kEnd = std::numeric_limits<int64_t>::min();

struct Shape {
  int n_q, n_qh, hd;
  std::vector<int64_t> piece_lens;
  int64_t gap;     // positions skipped between pieces (the first starts at gap too)
  int64_t q_pos0;  // or kEnd
  bool causal;
  DType dt;
  float scale;     // 0: 1 / sqrt(hd)
};

// Random q, K, V (K / V stored in dt; `kf` / `vf` hold the values as read back).
struct Problem {
  Shape s;
  std::vector<float> q;
  std::vector<std::vector<uint8_t>> kb, vb;
  std::vector<std::vector<float>> kf, vf;
  std::vector<int64_t> pos0;
  AttnArgs a;
  std::vector<float> out, lse;

  explicit Problem(const Shape& sh, uint32_t seed = 1) : s(sh) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.f, 1.f);
    q.resize(static_cast<size_t>(s.n_q) * s.n_qh * s.hd);
    for (float& x : q) x = nd(rng);
    int64_t pos = s.gap;
    for (int64_t len : s.piece_lens) {
      const size_t n = static_cast<size_t>(len * s.hd);
      kf.emplace_back(n);
      vf.emplace_back(n);
      kb.emplace_back(dtype_bytes(s.dt, static_cast<int64_t>(n)));
      vb.emplace_back(dtype_bytes(s.dt, static_cast<int64_t>(n)));
      for (int side = 0; side < 2; ++side) {
        std::vector<float>& f = side ? vf.back() : kf.back();
        uint8_t* b = side ? vb.back().data() : kb.back().data();
        for (size_t i = 0; i < n; ++i) {
          const float x = nd(rng);
          if (s.dt == DType::F32) {
            f[i] = x;
            std::memcpy(b + 4 * i, &x, 4);
          } else {
            const uint16_t h = s.dt == DType::BF16 ? f32_to_bf16(x) : f32_to_f16(x);
            f[i] = s.dt == DType::BF16 ? bf16_to_f32(h) : f16_to_f32(h);
            std::memcpy(b + 2 * i, &h, 2);
          }
        }
      }
      pos0.push_back(pos);
      a.pieces.push_back(KvPiece{kb.back().data(), vb.back().data(), len, pos});
      pos += len + s.gap;
    }
    a.q = q.data();
    a.q_stride = int64_t{s.n_qh} * s.hd + 5;  // strides need not equal the row width
    q.resize(static_cast<size_t>(s.n_q) * a.q_stride);
    // Re-lay q with the padded stride (padding holds NaN: it must never be read).
    std::vector<float> packed(q.begin(), q.begin() + static_cast<ptrdiff_t>(int64_t{s.n_q} * s.n_qh * s.hd));
    std::fill(q.begin(), q.end(), std::numeric_limits<float>::quiet_NaN());
    for (int t = 0; t < s.n_q; ++t)
      std::copy_n(packed.begin() + static_cast<ptrdiff_t>(int64_t{t} * s.n_qh * s.hd), s.n_qh * s.hd,
                  q.begin() + static_cast<ptrdiff_t>(t * a.q_stride));
    a.q = q.data();
    a.n_q = s.n_q;
    a.n_qh = s.n_qh;
    a.head_dim = s.hd;
    const int64_t last = s.piece_lens.empty() ? 0 : pos0.back() + s.piece_lens.back() - 1;
    a.q_pos0 = s.q_pos0 != kEnd ? s.q_pos0 : last - s.n_q + 1;
    a.causal = s.causal;
    a.scale = s.scale > 0 ? s.scale : static_cast<float>(1.0 / std::sqrt(static_cast<double>(s.hd)));
    a.kv_dtype = s.dt;
    a.out_stride = int64_t{s.n_qh} * s.hd + 3;
    out.assign(static_cast<size_t>(s.n_q) * a.out_stride, std::numeric_limits<float>::quiet_NaN());
    lse.assign(static_cast<size_t>(s.n_q) * s.n_qh, std::numeric_limits<float>::quiet_NaN());
    a.out = out.data();
    a.lse = lse.data();
  }

  const float* qrow(int t, int h) const { return q.data() + t * a.q_stride + h * s.hd; }
  const float* orow(int t, int h) const { return out.data() + t * a.out_stride + h * s.hd; }

  // Reference over keys [k0, k1) of the concatenation, in double.
  void reference(int t, int h, int64_t k0, int64_t k1, std::vector<double>& o, double& l) const {
    o.assign(static_cast<size_t>(s.hd), 0.0);
    std::vector<double> sc;
    std::vector<const float*> vr;
    int64_t g = 0;
    for (size_t p = 0; p < kf.size(); ++p)
      for (int64_t j = 0; j < s.piece_lens[p]; ++j, ++g) {
        if (g < k0 || g >= k1) continue;
        if (s.causal && pos0[p] + j > a.q_pos0 + t) continue;
        double dot = 0;
        for (int d = 0; d < s.hd; ++d) dot += double{qrow(t, h)[d]} * kf[p][static_cast<size_t>(j * s.hd + d)];
        sc.push_back(dot * a.scale);
        vr.push_back(&vf[p][static_cast<size_t>(j * s.hd)]);
      }
    l = -INFINITY;
    if (sc.empty()) return;
    double mx = -INFINITY;
    for (double x : sc) mx = std::max(mx, x);
    double sum = 0;
    for (double x : sc) sum += std::exp(x - mx);
    for (size_t j = 0; j < sc.size(); ++j)
      for (int d = 0; d < s.hd; ++d) o[static_cast<size_t>(d)] += std::exp(sc[j] - mx) / sum * vr[j][d];
    l = mx + std::log(sum);
  }

  int64_t keys() const {
    int64_t n = 0;
    for (int64_t x : s.piece_lens) n += x;
    return n;
  }

  // out / lse rows [0, n_q) x [0, n_qh) against the reference over [k0, k1).
  void check(int64_t k0, int64_t k1, const float* o_base, int64_t o_stride, const float* l_base) const {
    std::vector<double> ref;
    double rl;
    for (int t = 0; t < s.n_q; ++t)
      for (int h = 0; h < s.n_qh; ++h) {
        reference(t, h, k0, k1, ref, rl);
        const float* o = o_base + t * o_stride + h * s.hd;
        const float lv = l_base[t * s.n_qh + h];
        for (int d = 0; d < s.hd; ++d)
          ASSERT_NEAR(o[d], ref[static_cast<size_t>(d)], 2e-5 * (1 + std::abs(ref[static_cast<size_t>(d)])))
              << "t " << t << " h " << h << " d " << d;
        if (std::isinf(rl)) {
          ASSERT_TRUE(std::isinf(lv) && lv < 0) << "t " << t << " h " << h << " sees no key: lse " << lv;
        } else {
          ASSERT_NEAR(lv, rl, 2e-5 * (1 + std::abs(rl))) << "t " << t << " h " << h;
        }
      }
  }
};

class AttentionTiles : public ::testing::TestWithParam<Shape> {};

TEST_P(AttentionTiles, MatchesDoubleReference) {
  Problem p(GetParam());
  ThreadPool pool(2);
  cpu_attention(pool, p.a);
  p.check(0, p.keys(), p.out.data(), p.a.out_stride, p.lse.data());
  // The gaps between output rows are untouched.
  for (int t = 0; t < p.s.n_q; ++t)
    for (int64_t i = int64_t{p.s.n_qh} * p.s.hd; i < p.a.out_stride; ++i)
      ASSERT_TRUE(std::isnan(p.out[static_cast<size_t>(t * p.a.out_stride + i)]));
}

// A key range of the concatenation, as the core computes it for split modes.
TEST_P(AttentionTiles, KeyRangeMatchesReference) {
  Problem p(GetParam());
  const int64_t keys = p.keys();
  const int64_t k0 = keys / 3, k1 = keys - keys / 5;
  std::vector<float> o(static_cast<size_t>(p.s.n_q) * p.s.n_qh * p.s.hd), l(static_cast<size_t>(p.s.n_q) * p.s.n_qh);
  cpu_attention_rows(p.a, 0, int64_t{p.s.n_q} * p.s.n_qh, k0, k1, o.data(), int64_t{p.s.n_qh} * p.s.hd, l.data());
  p.check(k0, k1, o.data(), int64_t{p.s.n_qh} * p.s.hd, l.data());
}

constexpr DType F32 = DType::F32, F16 = DType::F16, BF16 = DType::BF16;

// Rows n_q * n_qh < 16 take the narrow kernel, others the wide one; calls with few
// row tiles and >= 8192 keys are split over keys. Key tiles are 64 keys.
INSTANTIATE_TEST_SUITE_P(
    Shapes, AttentionTiles,
    ::testing::Values(
        // narrow: decode-like, one token
        Shape{1, 1, 128, {300}, 0, kEnd, true, F32, 0},
        Shape{1, 4, 30, {65, 1, 63}, 3, kEnd, true, BF16, 0},
        Shape{1, 7, 96, {129}, 0, kEnd, true, F16, 0},
        Shape{2, 7, 17, {64, 64}, 9, kEnd, true, F32, 0},
        Shape{3, 5, 256, {200}, 0, 150, true, BF16, 0},   // later rows see more
        Shape{1, 1, 33, {40}, 0, 10, false, F32, 0},      // no mask
        // narrow with key splits (>= 8192 keys, one row group)
        Shape{1, 1, 128, {9000}, 0, kEnd, true, F32, 0},
        Shape{1, 4, 64, {4000, 4300, 7}, 11, kEnd, true, F16, 0},
        Shape{2, 2, 31, {8193}, 0, 1000, true, BF16, 0},  // split ranges beyond the query: masked
        // wide: row tiles of 32 with odd edges
        Shape{16, 1, 32, {16}, 0, 0, true, F32, 0},       // exactly the wide threshold
        Shape{31, 1, 128, {31}, 0, 0, true, F32, 0},
        Shape{33, 1, 64, {100}, 0, kEnd, true, BF16, 0},
        Shape{65, 1, 30, {70, 65}, 2, kEnd, true, F16, 0},
        Shape{9, 4, 96, {300, 5}, 3, kEnd, true, F32, 0},   // GQA 4, tile spans 8 tokens
        Shape{5, 7, 100, {129, 64}, 1, kEnd, true, BF16, 0},  // GQA 7: tiles split a token's heads
        Shape{3, 32, 128, {77}, 0, kEnd, true, F16, 0},     // GQA 32: one token per tile
        Shape{40, 1, 256, {513}, 0, 600, false, F32, 0},  // no mask, long rows
        Shape{20, 3, 48, {30, 30, 30}, 0, 0, true, F32, 0},  // early queries see few keys
        Shape{24, 2, 64, {10}, 0, -100, true, BF16, 0},   // every key masked: lse = -inf, zero rows
        Shape{40, 1, 64, {64, 64}, 20, 0, true, F32, 0},  // first rows see nothing, later ones do
        Shape{48, 1, 128, {8300}, 0, kEnd, true, F32, 0},   // wide with key splits
        Shape{64, 1, 128, {700}, 0, kEnd, true, F32, 1.f},  // peaked softmax: big score range
        Shape{17, 1, 16, {1}, 0, kEnd, true, F16, 0}));

TEST(AttentionTiles, EmptyKeysGiveZeroRows) {
  for (int n_q : {1, 40}) {
    Problem p(Shape{n_q, 2, 32, {}, 0, 0, true, F32, 0});
    ThreadPool pool(1);
    cpu_attention(pool, p.a);
    for (int t = 0; t < n_q; ++t)
      for (int h = 0; h < 2; ++h) {
        for (int d = 0; d < 32; ++d) ASSERT_EQ(p.orow(t, h)[d], 0.f);
        ASSERT_TRUE(std::isinf(p.lse[static_cast<size_t>(t * 2 + h)]));
      }
  }
}

std::vector<float> run_bits(const Shape& s, int threads) {
  Problem p(s, 9);
  ThreadPool pool(threads);
  cpu_attention(pool, p.a);
  std::vector<float> r = p.out;
  r.insert(r.end(), p.lse.begin(), p.lse.end());
  return r;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

const Shape kDeterminismShapes[] = {
    Shape{200, 1, 128, {900, 300}, 4, kEnd, true, F32, 0},  // wide, many tiles
    Shape{37, 7, 96, {500}, 0, kEnd, true, BF16, 0},        // wide, GQA 7
    Shape{40, 1, 64, {9000}, 0, kEnd, true, F16, 0},        // wide with key splits
    Shape{1, 4, 128, {20000}, 0, kEnd, true, F32, 0},       // decode with key splits
    Shape{3, 2, 30, {700}, 0, kEnd, true, BF16, 0},         // narrow, no split
};

TEST(AttentionTiles, SameBitsForAnyThreadCount) {
  for (const Shape& s : kDeterminismShapes) {
    const auto one = run_bits(s, 1);
    EXPECT_TRUE(same_bits(one, run_bits(s, 2))) << "n_q " << s.n_q << " n_qh " << s.n_qh;
    EXPECT_TRUE(same_bits(one, run_bits(s, 3))) << "n_q " << s.n_q << " n_qh " << s.n_qh;
  }
}

TEST(AttentionTiles, SameBitsOnAvx2AndAvx512) {
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
      !__builtin_cpu_supports("avx512vl") || !__builtin_cpu_supports("avx512dq"))
    GTEST_SKIP() << "no AVX-512 on this CPU";
  for (const Shape& s : kDeterminismShapes) {
    cpu_matmul_set_isa(CpuIsa::Avx2);
    const auto a2 = run_bits(s, 2);
    cpu_matmul_set_isa(CpuIsa::Avx512);
    const auto a5 = run_bits(s, 2);
    cpu_matmul_set_isa(CpuIsa::Auto);
    EXPECT_TRUE(same_bits(a2, a5)) << "n_q " << s.n_q << " n_qh " << s.n_qh;
  }
}

// A row's result does not depend on which rows share its call to the core.
TEST(AttentionTiles, SameBitsForAnySplitOfTheRows) {
  for (const Shape& s : {kDeterminismShapes[0], kDeterminismShapes[1], kDeterminismShapes[4]}) {
    Problem p(s, 4);
    const int64_t rows = int64_t{s.n_q} * s.n_qh, keys = p.keys();
    std::vector<float> whole = p.out, wl = p.lse;
    cpu_attention_rows(p.a, 0, rows, 0, keys, whole.data(), p.a.out_stride, wl.data());
    std::vector<float> parts = p.out, pl = p.lse;
    for (int64_t r0 = 0, step = 1; r0 < rows; r0 += step, step = step * 3 % 41 + 1)
      cpu_attention_rows(p.a, r0, std::min(rows, r0 + step), 0, keys, parts.data(), p.a.out_stride, pl.data());
    EXPECT_TRUE(same_bits(whole, parts)) << "n_q " << s.n_q;
    EXPECT_TRUE(same_bits(wl, pl)) << "n_q " << s.n_q;
  }
}

TEST(AttentionTiles, VectorExpIsCloseToExp) {
  std::vector<float> x;
  for (float v = -87.f; v <= 88.f; v += 0.0137f) x.push_back(v);
  for (float v : {0.f, -0.f, 1e-30f, -1e-30f, -0.3465f, 0.3466f, -87.29f}) x.push_back(v);
  std::vector<float> y(x.size());
  for (int isa = 0; isa < 2; ++isa) {
    if (isa == 1 && cpu_matmul_isa() != CpuIsa::Avx512) continue;
    (isa ? cpu_kern::exp_avx512 : cpu_kern::exp_avx2)(x.data(), y.data(), static_cast<int>(x.size()));
    for (size_t i = 0; i < x.size(); ++i) {
      const double want = std::exp(static_cast<double>(x[i]));
      ASSERT_NEAR(y[i], want, 3e-7 * want) << "exp(" << x[i] << ")";
    }
  }
  const float special[] = {-INFINITY, -1e30f, -87.4f, -200.f, NAN};
  float out[5];
  cpu_kern::exp_avx2(special, out, 5);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(out[i], 0.f) << "exp(" << special[i] << ")";
  EXPECT_TRUE(std::isnan(out[4]));
}

}  // namespace
}  // namespace headinfer
