#include <gtest/gtest.h>

#include <map>

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

}  // namespace
}  // namespace headinfer
