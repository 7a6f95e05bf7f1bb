// The CPU attention against a naive two-pass softmax written independently here,
// for MHA / GQA / MQA groupings, several KV pieces, causal masking by position,
// and the log-sum-exp merge of partial results.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "backend/backend.hpp"
#include "common/half.hpp"

namespace headinfer {
namespace {

struct Case {
  int n_q, n_qh, hd;
  std::vector<int64_t> piece_lens;
  int64_t q_pos0;
  bool causal;
};

// out[t][h][d] and lse[t][h] by the definition, in double.
void naive(const std::vector<float>& q, int n_q, int n_qh, int hd, const std::vector<std::vector<float>>& ks,
           const std::vector<std::vector<float>>& vs, const std::vector<int64_t>& pos0s, int64_t q_pos0, bool causal,
           std::vector<double>& out, std::vector<double>& lse) {
  out.assign(static_cast<size_t>(n_q) * n_qh * hd, 0.0);
  lse.assign(static_cast<size_t>(n_q) * n_qh, -INFINITY);
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  for (int t = 0; t < n_q; ++t)
    for (int h = 0; h < n_qh; ++h) {
      std::vector<double> sc, w;
      std::vector<const float*> vrows;
      for (size_t p = 0; p < ks.size(); ++p)
        for (size_t j = 0; j < ks[p].size() / hd; ++j) {
          if (causal && pos0s[p] + static_cast<int64_t>(j) > q_pos0 + t) continue;
          double dot = 0;
          for (int d = 0; d < hd; ++d) dot += q[(static_cast<size_t>(t) * n_qh + h) * hd + d] * ks[p][j * hd + d];
          sc.push_back(dot * scale);
          vrows.push_back(&vs[p][j * hd]);
        }
      if (sc.empty()) continue;
      double mx = -INFINITY;
      for (double s : sc) mx = std::max(mx, s);
      double sum = 0;
      for (double s : sc) sum += std::exp(s - mx);
      for (size_t j = 0; j < sc.size(); ++j)
        for (int d = 0; d < hd; ++d)
          out[(static_cast<size_t>(t) * n_qh + h) * hd + d] += std::exp(sc[j] - mx) / sum * vrows[j][d];
      lse[static_cast<size_t>(t) * n_qh + h] = mx + std::log(sum);
    }
}

class AttentionCpu : public ::testing::TestWithParam<Case> {};

TEST_P(AttentionCpu, MatchesNaiveSoftmax) {
  const Case c = GetParam();
  auto be = make_cpu_backend(2);
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> q(static_cast<size_t>(c.n_q) * c.n_qh * c.hd);
  for (float& x : q) x = nd(rng);
  std::vector<std::vector<float>> ks, vs;
  std::vector<int64_t> pos0s;
  int64_t pos = 0;
  AttnArgs a;
  for (int64_t len : c.piece_lens) {
    ks.emplace_back(static_cast<size_t>(len * c.hd));
    vs.emplace_back(static_cast<size_t>(len * c.hd));
    for (float& x : ks.back()) x = nd(rng);
    for (float& x : vs.back()) x = nd(rng);
    pos0s.push_back(pos);
    a.pieces.push_back(KvPiece{ks.back().data(), vs.back().data(), len, pos});
    pos += len + 3;  // gaps between pieces: positions need not be contiguous
  }
  std::vector<float> out(q.size(), std::numeric_limits<float>::quiet_NaN());
  std::vector<float> lse(static_cast<size_t>(c.n_q) * c.n_qh, std::numeric_limits<float>::quiet_NaN());
  a.q = q.data();
  a.q_stride = static_cast<int64_t>(c.n_qh) * c.hd;
  a.n_q = c.n_q;
  a.n_qh = c.n_qh;
  a.head_dim = c.hd;
  a.q_pos0 = c.q_pos0;
  a.causal = c.causal;
  a.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.hd)));
  a.kv_dtype = DType::F32;
  a.out = out.data();
  a.out_stride = a.q_stride;
  a.lse = lse.data();
  be->attention(a);

  std::vector<double> ref, ref_lse;
  naive(q, c.n_q, c.n_qh, c.hd, ks, vs, pos0s, c.q_pos0, c.causal, ref, ref_lse);
  for (size_t i = 0; i < out.size(); ++i) ASSERT_NEAR(out[i], ref[i], 2e-5) << "element " << i;
  for (size_t i = 0; i < lse.size(); ++i) {
    if (std::isinf(ref_lse[i])) {
      ASSERT_TRUE(std::isinf(lse[i]) && lse[i] < 0) << "row " << i << " should see no keys";
    } else {
      ASSERT_NEAR(lse[i], ref_lse[i], 2e-5) << "row " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, AttentionCpu,
                         ::testing::Values(Case{1, 1, 16, {1}, 0, true},          // MHA, one key
                                           Case{7, 4, 32, {300, 5}, 290, true},   // GQA, two pieces, chunk edge
                                           Case{3, 8, 16, {513}, 600, false},     // MQA-like group, no mask
                                           Case{5, 2, 64, {40, 40, 40}, 0, true},  // early queries see few keys
                                           Case{2, 3, 8, {10}, -5, true}));        // every key masked: lse = -inf

TEST(AttentionCpu, MergeOfTwoHalvesEqualsWhole) {
  auto be = make_cpu_backend(1);
  const int hd = 16, n_qh = 4, n_q = 3;
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> q(n_q * n_qh * hd), k(200 * hd), v(200 * hd);
  for (auto* vec : {&q, &k, &v})
    for (float& x : *vec) x = nd(rng);
  auto run = [&](int64_t from, int64_t n, std::vector<float>& out, std::vector<float>& lse) {
    AttnArgs a;
    a.q = q.data();
    a.q_stride = n_qh * hd;
    a.n_q = n_q;
    a.n_qh = n_qh;
    a.head_dim = hd;
    a.q_pos0 = 197;
    a.scale = 0.25f;
    a.pieces.push_back(KvPiece{k.data() + from * hd, v.data() + from * hd, n, from});
    out.assign(q.size(), NAN);
    lse.assign(n_q * n_qh, NAN);
    a.out = out.data();
    a.out_stride = a.q_stride;
    a.lse = lse.data();
    be->attention(a);
  };
  std::vector<float> whole, wl, lo, ll, hi, hl;
  run(0, 200, whole, wl);
  run(0, 120, lo, ll);
  run(120, 80, hi, hl);
  be->merge_attention(lo.data(), ll.data(), hi.data(), hl.data(), n_q, n_qh, hd, n_qh * hd, n_qh * hd);
  for (size_t i = 0; i < whole.size(); ++i) ASSERT_NEAR(lo[i], whole[i], 1e-5);
  for (size_t i = 0; i < wl.size(); ++i) ASSERT_NEAR(ll[i], wl[i], 1e-5);
}

TEST(AttentionCpu, Bf16KvReadsLikeRoundedF32) {
  auto be = make_cpu_backend(1);
  const int hd = 32, n = 50;
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> q(hd), kf(n * hd), vf(n * hd);
  std::vector<uint16_t> kb(n * hd), vb(n * hd);
  for (float& x : q) x = nd(rng);
  for (int i = 0; i < n * hd; ++i) {
    kb[i] = f32_to_bf16(nd(rng));
    vb[i] = f32_to_bf16(nd(rng));
    kf[i] = bf16_to_f32(kb[i]);
    vf[i] = bf16_to_f32(vb[i]);
  }
  auto run = [&](DType t, const void* k, const void* v) {
    std::vector<float> out(hd, NAN);
    AttnArgs a;
    a.q = q.data();
    a.q_stride = hd;
    a.n_q = 1;
    a.n_qh = 1;
    a.head_dim = hd;
    a.q_pos0 = n - 1;
    a.scale = 0.2f;
    a.kv_dtype = t;
    a.pieces.push_back(KvPiece{k, v, n, 0});
    a.out = out.data();
    a.out_stride = hd;
    be->attention(a);
    return out;
  };
  EXPECT_EQ(run(DType::BF16, kb.data(), vb.data()), run(DType::F32, kf.data(), vf.data()));
}

// A call over several KV heads (strided K/V, per-head lse blocks) is, bit for bit,
// the same as one call per head.
TEST(AttentionCpu, SeveralKvHeadsEqualOneCallPerHead) {
  auto be = make_cpu_backend(2);
  const int H = 3, qpk = 2, hd = 64, n_q = 20;
  const int64_t prefix = 37, kv_stride = (prefix + n_q + 3) * hd, lse_stride = n_q * qpk + 5;
  const int64_t q_w = int64_t{H} * qpk * hd;
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  std::vector<float> q(static_cast<size_t>(n_q) * q_w), kv(2 * static_cast<size_t>(H) * kv_stride);
  for (float& x : q) x = nd(rng);
  for (float& x : kv) x = nd(rng);
  const float* k = kv.data();
  const float* v = kv.data() + static_cast<size_t>(H) * kv_stride;
  AttnArgs a;
  a.q = q.data();
  a.q_stride = q_w;
  a.n_q = n_q;
  a.n_qh = qpk;
  a.head_dim = hd;
  a.q_pos0 = prefix;
  a.scale = 0.125f;
  a.kv_dtype = DType::F32;
  a.pieces = {KvPiece{k, v, prefix, 0, kv_stride}, KvPiece{k + prefix * hd, v + prefix * hd, n_q, prefix, kv_stride}};
  a.out_stride = q_w;
  a.n_kv_heads = H;
  a.lse_head_stride = lse_stride;
  std::vector<float> out_all(q.size(), NAN), lse_all(static_cast<size_t>(H) * lse_stride, NAN);
  a.out = out_all.data();
  a.lse = lse_all.data();
  be->attention(a);
  std::vector<float> out_one(q.size(), NAN), lse_one(lse_all.size(), NAN);
  for (int j = 0; j < H; ++j) {
    AttnArgs h = a;
    h.n_kv_heads = 1;
    h.q = q.data() + j * qpk * hd;
    h.out = out_one.data() + j * qpk * hd;
    h.lse = lse_one.data() + j * lse_stride;
    h.pieces = {KvPiece{k + j * kv_stride, v + j * kv_stride, prefix, 0},
                KvPiece{k + j * kv_stride + prefix * hd, v + j * kv_stride + prefix * hd, n_q, prefix}};
    be->attention(h);
  }
  ASSERT_EQ(std::memcmp(out_all.data(), out_one.data(), out_all.size() * 4), 0);
  for (int j = 0; j < H; ++j)
    ASSERT_EQ(std::memcmp(lse_all.data() + j * lse_stride, lse_one.data() + j * lse_stride, n_q * qpk * 4), 0);
  EXPECT_TRUE(std::isnan(lse_all[n_q * qpk])) << "wrote past a head's lse block";

  // The same keys in two calls, the second accumulating into the first's result:
  // equal to the explicit merge of two results bit for bit, and to one call closely.
  std::vector<float> out_acc(q.size(), NAN), lse_acc(lse_all.size(), NAN);
  std::vector<float> scratch(static_cast<size_t>(n_q) * H * qpk * (hd + 1), NAN);
  AttnArgs first = a, second = a;
  first.pieces = {a.pieces[0]};
  second.pieces = {a.pieces[1]};
  first.out = second.out = out_acc.data();
  first.lse = second.lse = lse_acc.data();
  second.accumulate = true;
  second.scratch = scratch.data();
  be->attention(first);
  be->attention(second);
  for (size_t i = 0; i < out_acc.size(); ++i) ASSERT_NEAR(out_acc[i], out_all[i], 1e-5) << i;
  std::vector<float> out_two(q.size(), NAN), lse_two(lse_all.size(), NAN), out_b(q.size()), lse_b(lse_all.size());
  first.out = out_two.data();
  first.lse = lse_two.data();
  AttnArgs b = second;
  b.accumulate = false;
  b.out = out_b.data();
  b.lse = lse_b.data();
  be->attention(first);
  be->attention(b);
  for (int j = 0; j < H; ++j)
    be->merge_attention(out_two.data() + j * qpk * hd, lse_two.data() + j * lse_stride, out_b.data() + j * qpk * hd,
                        lse_b.data() + j * lse_stride, n_q, qpk, hd, q_w, q_w);
  EXPECT_EQ(std::memcmp(out_two.data(), out_acc.data(), out_acc.size() * 4), 0) << "accumulate vs explicit merge";
}

}  // namespace
}  // namespace headinfer
