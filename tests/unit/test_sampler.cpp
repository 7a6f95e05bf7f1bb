#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <random>

#include "backend/backend_factory.hpp"
#include "headinfer/error.hpp"
#include "runtime/sampler.hpp"

namespace headinfer {
namespace {

SamplingParams greedy() {
  SamplingParams p;
  p.temperature = 0;
  return p;
}

TEST(Sampler, GreedyTakesFirstMaximum) {
  Sampler s(greedy());
  EXPECT_EQ(s.sample({0.f, 3.f, 1.f, 3.f}), 1);
}

TEST(Sampler, RepetitionPenaltyDividesPositiveAndMultipliesNegative) {
  SamplingParams p = greedy();
  p.repeat_penalty = 2.0f;
  Sampler s(p);
  s.accept(0);
  EXPECT_EQ(s.sample({3.f, 2.f}), 1);  // 3/2 = 1.5 < 2
  Sampler t(p);
  t.accept(1);
  EXPECT_EQ(t.sample({-1.f, -0.6f}), 0);  // -0.6*2 = -1.2 < -1
}

TEST(Sampler, TopKOneIsGreedy) {
  SamplingParams p;
  p.temperature = 5.f;
  p.top_k = 1;
  Sampler s(p);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(s.sample({0.1f, 0.5f, 0.3f}), 1);
}

TEST(Sampler, MinPRemovesUnlikelyTokens) {
  SamplingParams p;
  p.temperature = 1.f;
  p.top_k = 0;
  p.top_p = 1.f;
  p.min_p = 0.5f;  // keeps tokens with prob >= half the best one
  Sampler s(p);
  // token 2 has prob ratio e^-3 to the best: never drawn
  for (int i = 0; i < 200; ++i) EXPECT_NE(s.sample({1.f, 0.9f, -2.f}), 2);
}

TEST(Sampler, TopPKeepsSmallestNucleus) {
  SamplingParams p;
  p.temperature = 1.f;
  p.top_k = 0;
  p.min_p = 0;
  p.top_p = 0.5f;  // the best token alone holds > 50%
  Sampler s(p);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(s.sample({5.f, 1.f, 1.f, 1.f}), 0);
}

TEST(Sampler, SeedMakesDrawsReproducibleAndDistributionRoughlyRight) {
  SamplingParams p;
  p.temperature = 1.f;
  p.top_k = 0;
  p.top_p = 1.f;
  p.min_p = 0;
  p.seed = 42;
  Sampler a(p), b(p);
  std::map<int, int> counts;
  const std::vector<float> logits = {0.f, std::log(3.f)};  // probs 1/4, 3/4
  for (int i = 0; i < 4000; ++i) {
    const int x = a.sample(logits);
    ASSERT_EQ(x, b.sample(logits));
    counts[x]++;
  }
  EXPECT_NEAR(counts[1] / 4000.0, 0.75, 0.03);
}

// A row with ties (values on a coarse grid), a few -inf, and its largest values among
// the recent tokens so a penalty reorders the top.
std::vector<float> tied_row(int n, std::mt19937& rng) {
  std::normal_distribution<float> nd(0.f, 2.f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = std::round(nd(rng) * 4.f) / 4.f;
  v[7] = v[19] = -INFINITY;
  v[3] = v[11] = 9.f;  // tied maxima, both recent below
  v[5] = 8.75f;
  return v;
}

// The draw from the backend's top candidates is the draw from the whole row: same ids,
// step after step, for top-k with and without top-p, min-p and a repetition penalty.
TEST(Sampler, TopCandidatesDrawWhatTheWholeRowDraws) {
  auto be = make_backend("cpu", 1);
  std::mt19937 rng(5);
  struct Case {
    int top_k;
    float top_p, min_p, temperature, penalty;
  };
  const Case cases[] = {{40, 0.95f, 0.05f, 0.8f, 1.f},  {1, 1.f, 0.f, 1.f, 1.f},    {200, 1.f, 0.f, 2.f, 1.f},
                        {40, 0.95f, 0.05f, 0.8f, 1.3f}, {5, 0.5f, 0.f, 1.5f, 1.1f}, {3000, 0.99f, 0.f, 1.f, 1.2f}};
  for (const Case& c : cases) {
    SamplingParams p;
    p.top_k = c.top_k;
    p.top_p = c.top_p;
    p.min_p = c.min_p;
    p.temperature = c.temperature;
    p.repeat_penalty = c.penalty;
    p.repeat_last_n = 8;
    p.seed = 77;
    Sampler whole(p), top(p);
    for (int32_t id : {3, 5, 11, 3, 40}) {
      whole.accept(id);
      top.accept(id);
    }
    const std::vector<float> row = tied_row(2500, rng);
    for (int step = 0; step < 30; ++step) {
      const int need = top.candidates_needed();
      ASSERT_GT(need, 0) << "top_k " << c.top_k;
      if (step == 0) EXPECT_EQ(need, c.top_k + (c.penalty != 1.f ? 4 : 0));  // 4 distinct recent tokens
      const int32_t a = whole.sample(row);
      const int32_t b = top.sample_top(be->top_k(row.data(), static_cast<int64_t>(row.size()), need));
      ASSERT_EQ(a, b) << "top_k " << c.top_k << ", penalty " << c.penalty << ", step " << step;
      whole.accept(a);
      top.accept(b);
    }
  }
}

// The radix sort of the whole row gives std::sort's logit_order exactly: ties by id,
// -0 beside +0, NaN last, infinities and denormals in place.
TEST(Sampler, SortedByLogitIsLogitOrder) {
  std::mt19937 rng(9);
  for (const size_t n : {size_t{0}, size_t{1}, size_t{7}, size_t{5000}, size_t{128256}}) {
    std::vector<float> row = tied_row(static_cast<int>(std::max<size_t>(n, 20)), rng);
    row.resize(n);
    for (size_t i = 0; i + 6 < n; i += 97) {
      row[i] = -0.f;
      row[i + 1] = 0.f;
      row[i + 2] = NAN;
      row[i + 3] = INFINITY;
      row[i + 4] = 1e-42f;  // denormal
      row[i + 5] = -1e-42f;
    }
    std::vector<LogitCandidate> want(n);
    for (size_t i = 0; i < n; ++i) want[i] = {static_cast<int32_t>(i), row[i]};
    std::sort(want.begin(), want.end(), logit_order);
    const std::vector<LogitCandidate> got = sorted_by_logit(row);
    ASSERT_EQ(got.size(), n);
    for (size_t i = 0; i < n; ++i) ASSERT_EQ(got[i].id, want[i].id) << "n " << n << " rank " << i;
  }
}

TEST(Sampler, WholeRowNeededWithoutTopK) {
  SamplingParams p;
  p.top_k = 0;
  EXPECT_EQ(Sampler(p).candidates_needed(), 0);
  p.top_k = 40;
  p.temperature = 0.f;
  EXPECT_EQ(Sampler(p).candidates_needed(), 0);  // greedy: argmax instead
  p.temperature = 1.f;
  p.repeat_penalty = 0.9f;  // raises logits: any token may enter the top
  EXPECT_EQ(Sampler(p).candidates_needed(), 0);
  p.repeat_penalty = 1.f;
  p.top_k = kMaxTopK + 1;
  EXPECT_EQ(Sampler(p).candidates_needed(), 0);
}

TEST(Backend, TopKOrderAndTies) {
  auto be = make_backend("cpu", 1);
  const std::vector<float> row = {1.f, 3.f, -0.f, 3.f, NAN, 0.f, -INFINITY, 2.f};
  const std::vector<LogitCandidate> t = be->top_k(row.data(), static_cast<int64_t>(row.size()), 8);
  const std::vector<int32_t> want = {1, 3, 7, 0, 2, 5, 6, 4};  // -0 == +0 by index; NaN last
  ASSERT_EQ(t.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(t[i].id, want[i]) << i;
  EXPECT_EQ(be->top_k(row.data(), 3, 10).size(), 3u);  // k above n: all n
  EXPECT_THROW(be->top_k(row.data(), 8, 0), Error);
}

}  // namespace
}  // namespace headinfer
