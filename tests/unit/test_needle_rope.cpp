// RoPE at millions of positions, through the Backend's own rope op. The needle model
// depends on it twice: its previous-token head needs the fast pairs' angles exact
// to well under a radian at position 4M (pair 0 turns 1 rad per token, so an f32
// product pos * freq would already be ~0.1 rad off), and its induction head needs
// the slow pairs to stay nearly unturned across the whole context.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "backend/backend.hpp"
#include "format/model_loader.hpp"
#include "format/needle.hpp"

namespace headinfer {
namespace {

constexpr int kHd = needle::kHeadDim, kHalf = kHd / 2;

// Position x frequency reduced mod 2 pi in long double: the angle the rope op
// should have used.
long double exact_angle(int64_t pos, double inv_freq) {
  const long double two_pi = 6.283185307179586476925286766559L;
  return std::fmod(static_cast<long double>(pos) * static_cast<long double>(inv_freq), two_pi);
}

TEST(NeedleRope, AnglesExactNear4M) {
  auto be = make_cpu_backend(1);
  const std::vector<double> inv = rope_inv_freq(needle::needle_config(), 0);
  for (int64_t pos : {int64_t{4'000'000}, int64_t{4'194'299}, int64_t{3'999'999}}) {
    // One head whose pair i holds (1, 0): after rotation it is (cos, sin) of the angle.
    std::vector<float> x(kHd, 0.0f);
    for (int i = 0; i < kHalf; ++i) x[static_cast<size_t>(i)] = 1.0f;
    be->rope(RopeArgs{x.data(), kHd, 1, 1, kHd, pos, inv.data()});
    for (int i = 0; i < kHalf; ++i) {
      const long double a = exact_angle(pos, inv[static_cast<size_t>(i)]);
      EXPECT_NEAR(x[static_cast<size_t>(i)], static_cast<double>(std::cos(a)), 2e-6) << "pos " << pos << " pair " << i;
      EXPECT_NEAR(x[static_cast<size_t>(i + kHalf)], static_cast<double>(std::sin(a)), 2e-6)
          << "pos " << pos << " pair " << i;
    }
  }
  // Why double matters: the same product in f32 is far off for a fast pair.
  const float f32_angle = static_cast<float>(4'000'000) * static_cast<float>(inv[1]);
  const long double err = std::fabs(static_cast<long double>(f32_angle) - 4'000'000.0L * inv[1]);
  EXPECT_GT(static_cast<double>(err), 1e-2) << "f32 angles would be fine too; the test lost its point";
  // And the slow pairs the induction head uses barely turn across the whole context.
  EXPECT_LT(4'194'304.0 * inv[needle::kContentPair0], 0.04);
}

// q/k rows of head 0 of one layer for residual rows x[n, hidden], via the backend's
// own rmsnorm and matmul (as the executor computes them), then rope at pos0.
std::vector<float> project(Backend& be, const Mat& norm, const Mat& w, const std::vector<float>& x, int n, int64_t pos0,
                           const std::vector<double>& inv) {
  std::vector<float> h(x.size()), out(static_cast<size_t>(n) * w.rows);
  be.rmsnorm(x.data(), norm, 1e-6f, n, h.data());
  be.matmul(h.data(), n, w, nullptr, out.data());
  be.rope(RopeArgs{out.data(), w.rows, n, needle::kHeads, kHd, pos0, inv.data()});
  return out;
}

float dot_head0(const float* q, const float* k) {
  double s = 0;
  for (int d = 0; d < kHd; ++d) s += static_cast<double>(q[d]) * k[d];
  return static_cast<float>(s / std::sqrt(static_cast<double>(kHd)));
}

struct NeedleMats {
  std::vector<std::shared_ptr<const void>> keep;
  Mat norm1, norm2, wq1, wk1, wq2, wk2;
};

NeedleMats prepare(Backend& be, const LoadedModel& m) {
  NeedleMats r;
  r.norm1 = be.prepare(m.weights.layers[0].attn_norm, r.keep);
  r.norm2 = be.prepare(m.weights.layers[1].attn_norm, r.keep);
  r.wq1 = be.prepare(m.weights.layers[0].wq, r.keep);
  r.wk1 = be.prepare(m.weights.layers[0].wk, r.keep);
  r.wq2 = be.prepare(m.weights.layers[1].wq, r.keep);
  r.wk2 = be.prepare(m.weights.layers[1].wk, r.keep);
  return r;
}

// Layer-1 input of one token: its one-hot and the constant coordinate.
std::vector<float> layer1_rows(int n) {
  std::vector<float> x(static_cast<size_t>(n) * needle::kHidden, 0.0f);
  for (int t = 0; t < n; ++t) {
    x[static_cast<size_t>(t) * needle::kHidden + needle::kFirstFiller + t % needle::kNumFillers] = 1.0f;
    x[static_cast<size_t>(t) * needle::kHidden + needle::kBias] = 1.0f;
  }
  return x;
}

// Scores of the query at position t against keys at t - window .. t.
std::vector<float> previous_token_scores(Backend& be, const NeedleMats& w, const std::vector<double>& inv, int64_t t,
                                         int window) {
  const int n = window + 1;
  const std::vector<float> x = layer1_rows(n);
  const std::vector<float> k = project(be, w.norm1, w.wk1, x, n, t - window, inv);
  const std::vector<float> q = project(be, w.norm1, w.wq1, std::vector<float>(x.end() - needle::kHidden, x.end()), 1,
                                       t, inv);
  std::vector<float> s(static_cast<size_t>(n));
  for (int j = 0; j < n; ++j) s[static_cast<size_t>(j)] = dot_head0(q.data(), k.data() + static_cast<size_t>(j) * w.wk1.rows);
  return s;  // s[j]: key at distance window - j
}

TEST(NeedleRope, PreviousTokenHeadPeaksAtDistanceOneAt4M) {
  auto be = make_cpu_backend();
  LoadedModel m = load_model("synthetic:needle");
  const NeedleMats w = prepare(*be, m);
  const std::vector<double> inv = rope_inv_freq(m.config, 0);
  constexpr int kWindow = 4096;
  const std::vector<float> near0 = previous_token_scores(*be, w, inv, kWindow, kWindow);
  for (int64_t t : {int64_t{4'000'000}, int64_t{4'194'303}}) {
    const std::vector<float> far = previous_token_scores(*be, w, inv, t, kWindow);
    const int peak = kWindow - 1;  // distance 1
    float runner_up = -1e30f;
    for (int j = 0; j <= kWindow; ++j) {
      if (j != peak) runner_up = std::max(runner_up, far[static_cast<size_t>(j)]);
      // Translation invariance: at 4M the profile is the one seen near position 0.
      ASSERT_NEAR(far[static_cast<size_t>(j)], near0[static_cast<size_t>(j)], 0.05f)
          << "t " << t << " distance " << kWindow - j;
    }
    EXPECT_NEAR(far[static_cast<size_t>(peak)], needle::kPrevScore * needle::kPrevPairs, 0.5) << "t " << t;
    // The softmax needs the peak to win by a wide margin (e^-15 per rival key).
    EXPECT_GT(far[static_cast<size_t>(peak)] - runner_up, 15.0f) << "t " << t;
  }
}

TEST(NeedleRope, InductionHeadMatchesAcross4M) {
  auto be = make_cpu_backend(1);
  LoadedModel m = load_model("synthetic:needle");
  const NeedleMats w = prepare(*be, m);
  const std::vector<double> inv = rope_inv_freq(m.config, 0);
  // A key at position 0 whose previous token is `prev`, a query 4M later whose
  // current token is `cur`: the score is kContentScore exactly when they agree.
  auto score = [&](int prev, int cur) {
    std::vector<float> xk(needle::kHidden, 0.0f), xq(needle::kHidden, 0.0f);
    xk[needle::kE0 + 20] = xk[static_cast<size_t>(needle::kP0 + prev)] = xk[needle::kBias] = 1.0f;
    xq[static_cast<size_t>(needle::kE0 + cur)] = xq[needle::kP0 + 30] = xq[needle::kBias] = 1.0f;
    const std::vector<float> k = project(*be, w.norm2, w.wk2, xk, 1, 0, inv);
    const std::vector<float> q = project(*be, w.norm2, w.wq2, xq, 1, needle::kMaxPosition - 1, inv);
    return dot_head0(q.data(), k.data());
  };
  for (int tok : {needle::kMarker, needle::kDigit0, needle::kDigit0 + 9, 63}) {
    EXPECT_GT(score(tok, tok), 0.99 * needle::kContentScore) << "token " << tok;
    for (int other : {needle::kMarker, needle::kDigit0 + 4, 40, 62}) {
      if (other != tok) EXPECT_LT(std::fabs(score(other, tok)), 2.0) << "key " << other << " query " << tok;
    }
  }
}

}  // namespace
}  // namespace headinfer
