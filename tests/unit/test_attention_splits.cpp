// Split mode of the CPU attention (decode): partial results per key split of
// split_keys keys at absolute positions, merged by combine_attention. It must give
// the plain attention's result (same math, other order) and, for every split, the
// same bits whatever the pieces outside that split look like: the property the
// decode path's exactness under offloading rests on.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "backend/backend.hpp"
#include "headinfer/error.hpp"

namespace headinfer {
namespace {

struct Keys {
  int hd;
  std::vector<float> k, v;  // [n][hd]
};

Keys random_keys(int64_t n, int hd, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  Keys ks{hd, std::vector<float>(static_cast<size_t>(n * hd)), std::vector<float>(static_cast<size_t>(n * hd))};
  for (float& x : ks.k) x = nd(rng);
  for (float& x : ks.v) x = nd(rng);
  return ks;
}

// The pieces [cuts[i], cuts[i + 1]) of the keys.
std::vector<KvPiece> cut(const Keys& ks, const std::vector<int64_t>& cuts) {
  std::vector<KvPiece> out;
  for (size_t i = 0; i + 1 < cuts.size(); ++i)
    out.push_back(KvPiece{ks.k.data() + cuts[i] * ks.hd, ks.v.data() + cuts[i] * ks.hd, cuts[i + 1] - cuts[i], cuts[i]});
  return out;
}

struct Partials {
  std::vector<float> o, lse;
};

AttnArgs base_args(const std::vector<float>& q, int n_qh, int hd, int64_t q_pos0) {
  AttnArgs a;
  a.q = q.data();
  a.q_stride = int64_t{n_qh} * hd;
  a.n_q = 1;
  a.n_qh = n_qh;
  a.head_dim = hd;
  a.q_pos0 = q_pos0;
  a.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
  a.out_stride = a.q_stride;
  return a;
}

// Runs split-mode calls over each piece list into one partials buffer of `slots`.
Partials split_calls(Backend& be, const std::vector<float>& q, int n_qh, int hd, int64_t q_pos0, int64_t split,
                     int64_t slots, const std::vector<std::vector<KvPiece>>& calls) {
  Partials p;
  p.o.assign(static_cast<size_t>(slots * n_qh * hd), std::numeric_limits<float>::quiet_NaN());
  p.lse.assign(static_cast<size_t>(slots * n_qh), std::numeric_limits<float>::quiet_NaN());
  for (const auto& pieces : calls) {
    AttnArgs a = base_args(q, n_qh, hd, q_pos0);
    a.pieces = pieces;
    a.split_keys = split;
    a.part_o = p.o.data();
    a.part_o_slot_stride = int64_t{n_qh} * hd;
    a.part_lse = p.lse.data();
    a.part_lse_slot_stride = n_qh;
    be.attention(a);
  }
  return p;
}

TEST(AttentionSplits, CombinedSplitsEqualPlainAttention) {
  auto be = make_cpu_backend(2);
  for (const int n_qh : {1, 4, 8}) {
    const int hd = 32;
    const int64_t n = 1000, split = 64;  // the last key (the new token) at 999
    const Keys ks = random_keys(n, hd, 3 + n_qh);
    std::mt19937 rng(n_qh);
    std::normal_distribution<float> nd(0.f, 1.f);
    std::vector<float> q(static_cast<size_t>(n_qh * hd));
    for (float& x : q) x = nd(rng);

    AttnArgs plain = base_args(q, n_qh, hd, n - 1);
    plain.pieces = cut(ks, {0, n});
    std::vector<float> want(q.size()), want_lse(static_cast<size_t>(n_qh));
    plain.out = want.data();
    plain.lse = want_lse.data();
    be->attention(plain);

    const int64_t slots = (n + split - 1) / split;
    const Partials p = split_calls(*be, q, n_qh, hd, n - 1, split, slots, {cut(ks, {0, 512, 999, 1000})});
    std::vector<float> got(q.size(), NAN), got_lse(static_cast<size_t>(n_qh), NAN);
    be->combine_attention(p.o.data(), p.lse.data(), static_cast<int>(slots), 1, n_qh, hd, got.data(),
                          int64_t{n_qh} * hd, got_lse.data());
    for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], 1e-5) << "n_qh " << n_qh << " element " << i;
    for (int h = 0; h < n_qh; ++h) ASSERT_NEAR(got_lse[static_cast<size_t>(h)], want_lse[static_cast<size_t>(h)], 1e-5);
  }
}

// One call over [whole blocks | partial block | new token] (a resident head) and one
// call per block group (an offloaded head streamed in fills) give every slot the
// same bits: block starts are split starts, and the same pieces meet inside splits.
TEST(AttentionSplits, SlotsHaveTheSameBitsWhateverTheCallsOutsideThem) {
  auto be = make_cpu_backend(2);
  const int n_qh = 4, hd = 16;
  const int64_t block = 48, split = 16, pos = 173;  // blocks of 3 splits; the new token at 173
  const Keys ks = random_keys(pos + 1, hd, 9);
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> q(static_cast<size_t>(n_qh * hd));
  for (float& x : q) x = nd(rng);
  const int64_t slots = pos / split + 1;
  const int64_t whole = pos / block * block;  // 144
  const Partials resident = split_calls(*be, q, n_qh, hd, pos, split, slots, {cut(ks, {0, whole, pos, pos + 1})});
  const Partials fills = split_calls(*be, q, n_qh, hd, pos, split, slots,
                                     {cut(ks, {0, block}), cut(ks, {block, 2 * block, whole, pos, pos + 1})});
  EXPECT_EQ(0, std::memcmp(resident.o.data(), fills.o.data(), resident.o.size() * sizeof(float)));
  EXPECT_EQ(0, std::memcmp(resident.lse.data(), fills.lse.data(), resident.lse.size() * sizeof(float)));
  // The new token is a piece of its own: joined to the partial block, the last
  // split is cut into other key blocks (still the same math).
  const Partials joined = split_calls(*be, q, n_qh, hd, pos, split, slots, {cut(ks, {0, whole, pos + 1})});
  for (size_t i = 0; i < joined.o.size(); ++i) ASSERT_NEAR(joined.o[i], resident.o[i], 1e-5);
}

TEST(AttentionSplits, CausalMaskingAndEmptySlotsCombineToNothing) {
  auto be = make_cpu_backend(1);
  const int n_qh = 2, hd = 8;
  const Keys ks = random_keys(40, hd, 4);
  std::vector<float> q(static_cast<size_t>(n_qh * hd), 0.5f);
  // The query sits at 9: splits [16, 32) and [32, 40) see no key.
  const Partials p = split_calls(*be, q, n_qh, hd, 9, 16, 3, {cut(ks, {0, 40})});
  EXPECT_TRUE(std::isinf(p.lse[2]) && p.lse[2] < 0);
  EXPECT_TRUE(std::isinf(p.lse[5]) && p.lse[5] < 0);
  EXPECT_EQ(p.o[2 * n_qh * hd], 0.f);
  AttnArgs plain = base_args(q, n_qh, hd, 9);
  plain.pieces = cut(ks, {0, 40});
  std::vector<float> want(q.size());
  plain.out = want.data();
  be->attention(plain);
  std::vector<float> got(q.size(), NAN), got_lse(static_cast<size_t>(n_qh), NAN);
  be->combine_attention(p.o.data(), p.lse.data(), 3, 1, n_qh, hd, got.data(), int64_t{n_qh} * hd, got_lse.data());
  for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], 1e-5);
  // No slot with a key: zeros and -inf.
  std::vector<float> none_o(static_cast<size_t>(n_qh * hd), 1.f), none_lse(static_cast<size_t>(n_qh), -INFINITY);
  be->combine_attention(none_o.data(), none_lse.data(), 1, 1, n_qh, hd, got.data(), int64_t{n_qh} * hd, got_lse.data());
  EXPECT_EQ(got[0], 0.f);
  EXPECT_TRUE(std::isinf(got_lse[0]) && got_lse[0] < 0);
}

TEST(AttentionSplits, PiecesMustBeContiguousAndStartOnASplit) {
  auto be = make_cpu_backend(1);
  const int n_qh = 1, hd = 8;
  const Keys ks = random_keys(40, hd, 5);
  std::vector<float> q(static_cast<size_t>(hd), 0.1f);
  EXPECT_THROW(split_calls(*be, q, n_qh, hd, 39, 16, 3, {cut(ks, {8, 40})}), Error);
  std::vector<KvPiece> gap = cut(ks, {0, 16});
  gap.push_back(KvPiece{ks.k.data() + 20 * hd, ks.v.data() + 20 * hd, 4, 20});
  EXPECT_THROW(split_calls(*be, q, n_qh, hd, 39, 16, 3, {gap}), Error);
}

}  // namespace
}  // namespace headinfer
