#include "runtime/sampler.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <unordered_set>

namespace headinfer {

int32_t argmax(const std::vector<float>& logits) {
  // First maximum wins, as torch.argmax does.
  return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

std::vector<LogitCandidate> sorted_by_logit(const std::vector<float>& logits) {
  // One 64-bit word per logit: its order key above, its id below. The key is the
  // float's bits made monotonic (-0 as +0, NaN below every number), inverted so larger
  // values come first. An LSD radix sort of the key half is stable, so equal keys keep
  // their ascending ids. For a 128K vocabulary it is several times faster than
  // std::sort, which was most of a sampled step's host time.
  const size_t n = logits.size();
  std::vector<uint64_t> a(n), b(n);
  for (size_t i = 0; i < n; ++i) {
    float f = logits[i];
    uint32_t k = 0;
    if (f == f) {
      if (f == 0.f) f = 0.f;
      uint32_t u;
      std::memcpy(&u, &f, sizeof u);
      k = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    }
    a[i] = (static_cast<uint64_t>(~k) << 32) | static_cast<uint32_t>(i);
  }
  constexpr int kBits = 11;
  constexpr uint64_t kMask = (uint64_t{1} << kBits) - 1;
  for (int shift = 32; shift < 64; shift += kBits) {
    std::vector<size_t> start(kMask + 2, 0);
    for (size_t i = 0; i < n; ++i) ++start[((a[i] >> shift) & kMask) + 1];
    for (size_t d = 1; d < start.size(); ++d) start[d] += start[d - 1];
    for (size_t i = 0; i < n; ++i) b[start[(a[i] >> shift) & kMask]++] = a[i];
    a.swap(b);
  }
  std::vector<LogitCandidate> c(n);
  for (size_t i = 0; i < n; ++i) {
    const auto id = static_cast<int32_t>(a[i] & 0xffffffffu);
    c[i] = {id, logits[static_cast<size_t>(id)]};
  }
  return c;
}

Sampler::Sampler(const SamplingParams& p) : p_(p), rng_(p.seed) {}

void Sampler::accept(int32_t id) {
  if (p_.repeat_last_n <= 0) return;
  recent_.push_back(id);
  while (static_cast<int>(recent_.size()) > p_.repeat_last_n) recent_.pop_front();
}

namespace {

float penalized(float l, float penalty) { return l > 0 ? l / penalty : l * penalty; }

}  // namespace

int32_t Sampler::sample(const std::vector<float>& logits_in) {
  std::vector<float> logits = logits_in;
  if (p_.repeat_penalty != 1.0f) {
    std::unordered_set<int32_t> seen(recent_.begin(), recent_.end());
    for (int32_t id : seen) {
      float& l = logits[static_cast<size_t>(id)];
      l = penalized(l, p_.repeat_penalty);
    }
  }
  if (p_.temperature <= 0.f) return argmax(logits);

  if (p_.top_k <= 0 || static_cast<size_t>(p_.top_k) >= logits.size()) return draw(sorted_by_logit(logits));
  return draw(largest_logits(logits.data(), logits.size(), static_cast<size_t>(p_.top_k)));
}

int Sampler::candidates_needed() const {
  if (p_.temperature <= 0.f || p_.top_k <= 0 || p_.repeat_penalty < 1.0f) return 0;
  // A penalty above 1 only lowers logits, and at most one per distinct recent token:
  // the row's top_k after it lies within its top_k + that many before it.
  int extra = 0;
  if (p_.repeat_penalty != 1.0f) extra = static_cast<int>(std::unordered_set<int32_t>(recent_.begin(), recent_.end()).size());
  const int64_t n = static_cast<int64_t>(p_.top_k) + extra;
  return n > kMaxTopK ? 0 : static_cast<int>(n);
}

int32_t Sampler::sample_top(std::vector<LogitCandidate> c) {
  if (p_.repeat_penalty != 1.0f) {
    std::unordered_set<int32_t> seen(recent_.begin(), recent_.end());
    for (LogitCandidate& x : c)
      if (seen.count(x.id)) x.logit = penalized(x.logit, p_.repeat_penalty);
    std::sort(c.begin(), c.end(), logit_order);
  }
  if (c.size() > static_cast<size_t>(p_.top_k)) c.resize(static_cast<size_t>(p_.top_k));
  return draw(std::move(c));
}

int32_t Sampler::draw(std::vector<LogitCandidate> c) {
  // Softmax at temperature 1 for the truncation steps, as llama.cpp does.
  auto probs = [&]() {
    std::vector<double> p(c.size());
    const double mx = c.front().logit;
    double sum = 0;
    for (size_t i = 0; i < c.size(); ++i) sum += p[i] = std::exp(static_cast<double>(c[i].logit) - mx);
    for (double& x : p) x /= sum;
    return p;
  };
  if (p_.top_p < 1.f) {
    std::vector<double> p = probs();
    double cum = 0;
    size_t n = 0;
    while (n < c.size()) {
      cum += p[n++];
      if (cum >= p_.top_p) break;
    }
    c.resize(std::max<size_t>(n, 1));
  }
  if (p_.min_p > 0.f) {
    // p_i >= min_p * p_max  <=>  logit_i >= logit_max + log(min_p)
    const float cut = c.front().logit + std::log(p_.min_p);
    size_t n = 1;
    while (n < c.size() && c[n].logit >= cut) ++n;
    c.resize(n);
  }
  for (LogitCandidate& x : c) x.logit /= p_.temperature;
  std::vector<double> p = probs();
  std::discrete_distribution<size_t> dist(p.begin(), p.end());
  return c[dist(rng_)].id;
}

}  // namespace headinfer
