// Picks the next token from logits: repetition penalty, top-k, top-p, min-p,
// temperature, then a seeded draw; temperature 0 means greedy (argmax).
// The order follows llama.cpp's default chain so the same flags mean the same thing.
#pragma once

#include <cstdint>
#include <deque>
#include <random>
#include <vector>

#include "backend/backend.hpp"

namespace headinfer {

struct SamplingParams {
  float temperature = 0.8f;
  int top_k = 40;            // 0: off
  float top_p = 0.95f;       // 1: off
  float min_p = 0.05f;       // 0: off
  float repeat_penalty = 1.0f;  // 1: off
  int repeat_last_n = 64;       // window of recent tokens the penalty looks at
  uint64_t seed = 0xC0FFEEu;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& p);
  // Records a token the penalty should see (prompt tokens and generated ones).
  void accept(int32_t id);
  int32_t sample(const std::vector<float>& logits);
  // How many of the largest logits sample_top() needs to draw exactly what sample()
  // would from the whole row: top_k plus the distinct recent tokens a repetition
  // penalty may push down. 0 where the whole row is needed (top-k off, greedy, a
  // penalty below 1, or more than kMaxTopK).
  int candidates_needed() const;
  // sample() from the candidates_needed() largest logits, in Backend::top_k's order.
  int32_t sample_top(std::vector<LogitCandidate> top);

 private:
  int32_t draw(std::vector<LogitCandidate> c);  // top-p, min-p, temperature, draw from c (sorted)

  SamplingParams p_;
  std::mt19937_64 rng_;
  std::deque<int32_t> recent_;
};

int32_t argmax(const std::vector<float>& logits);
// Every logit as a candidate, sorted in logit_order (larger first, ties by smaller id,
// NaN last): the order std::sort with logit_order gives, by a stable radix sort.
std::vector<LogitCandidate> sorted_by_logit(const std::vector<float>& logits);

}  // namespace headinfer
