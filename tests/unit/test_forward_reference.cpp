// The whole forward pass of tiny MHA / GQA / MQA models against a naive reference
// written here in double precision (its own attention, RoPE and MLP), and the
// chunked-prefill property: chunk sizes 1, 7, 64 and the whole prompt agree.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "backend/backend.hpp"
#include "backend/forwarding_backend.hpp"
#include "format/model_loader.hpp"
#include "runtime/executor.hpp"
#include "runtime/sampler.hpp"

namespace headinfer {
namespace {

using Vec = std::vector<double>;

Vec read(const Tensor& t) {
  std::vector<float> f(static_cast<size_t>(t.numel()));
  to_f32(t.dtype, t.data, f.data(), t.numel());
  return Vec(f.begin(), f.end());
}

// y[r] = sum_c W[r, c] x[c]
Vec matvec(const Tensor& w, const Vec& x) {
  const Vec m = read(w);
  const int64_t rows = w.shape[0], cols = w.shape[1];
  Vec y(static_cast<size_t>(rows), 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) y[r] += m[r * cols + c] * x[c];
  return y;
}

Vec rmsnorm(const Vec& x, const Tensor& w, double eps) {
  const Vec g = read(w);
  double ss = 0;
  for (double v : x) ss += v * v;
  const double inv = 1.0 / std::sqrt(ss / x.size() + eps);
  Vec y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * inv * g[i];
  return y;
}

void rope(Vec& v, int n_heads, int hd, int64_t pos, double theta) {
  for (int h = 0; h < n_heads; ++h)
    for (int i = 0; i < hd / 2; ++i) {
      const double ang = pos * std::pow(theta, -2.0 * i / hd);
      double& a = v[h * hd + i];
      double& b = v[h * hd + i + hd / 2];
      const double x0 = a, x1 = b;
      a = x0 * std::cos(ang) - x1 * std::sin(ang);
      b = x1 * std::cos(ang) + x0 * std::sin(ang);
    }
}

// Logits after the last token of `ids`.
Vec naive_forward(const LoadedModel& m, const std::vector<int32_t>& ids) {
  const ModelConfig& c = m.config;
  const int hd = c.head_dim, grp = c.n_heads / c.n_kv_heads;
  const Vec emb = read(m.weights.tok_embd);
  std::vector<Vec> xs;
  for (int32_t id : ids) xs.emplace_back(emb.begin() + id * c.hidden, emb.begin() + (id + 1) * c.hidden);
  for (const LayerWeights& L : m.weights.layers) {
    std::vector<Vec> qs, ks, vs;
    for (size_t t = 0; t < xs.size(); ++t) {
      const Vec h = rmsnorm(xs[t], L.attn_norm, c.rms_eps);
      qs.push_back(matvec(L.wq, h));
      ks.push_back(matvec(L.wk, h));
      vs.push_back(matvec(L.wv, h));
      if (!L.bq.empty()) {
        const Vec bq = read(L.bq), bk = read(L.bk), bv = read(L.bv);
        for (size_t i = 0; i < bq.size(); ++i) qs.back()[i] += bq[i];
        for (size_t i = 0; i < bk.size(); ++i) ks.back()[i] += bk[i], vs.back()[i] += bv[i];
      }
      rope(qs.back(), c.n_heads, hd, static_cast<int64_t>(t), c.rope_theta);
      rope(ks.back(), c.n_kv_heads, hd, static_cast<int64_t>(t), c.rope_theta);
    }
    for (size_t t = 0; t < xs.size(); ++t) {
      Vec attn(static_cast<size_t>(c.n_heads) * hd, 0.0);
      for (int h = 0; h < c.n_heads; ++h) {
        const int kvh = h / grp;
        Vec s(t + 1);
        double mx = -INFINITY;
        for (size_t j = 0; j <= t; ++j) {
          double dot = 0;
          for (int d = 0; d < hd; ++d) dot += qs[t][h * hd + d] * ks[j][kvh * hd + d];
          s[j] = dot / std::sqrt(static_cast<double>(hd));
          mx = std::max(mx, s[j]);
        }
        double sum = 0;
        for (double& v : s) sum += v = std::exp(v - mx);
        for (size_t j = 0; j <= t; ++j)
          for (int d = 0; d < hd; ++d) attn[h * hd + d] += s[j] / sum * vs[j][kvh * hd + d];
      }
      const Vec o = matvec(L.wo, attn);
      for (size_t i = 0; i < o.size(); ++i) xs[t][i] += o[i];
      const Vec h2 = rmsnorm(xs[t], L.ffn_norm, c.rms_eps);
      const Vec g = matvec(L.w_gate, h2), u = matvec(L.w_up, h2);
      Vec a(g.size());
      for (size_t i = 0; i < g.size(); ++i) a[i] = g[i] / (1 + std::exp(-g[i])) * u[i];
      const Vec d = matvec(L.w_down, a);
      for (size_t i = 0; i < d.size(); ++i) xs[t][i] += d[i];
    }
  }
  return matvec(m.weights.lm_head, rmsnorm(xs.back(), m.weights.out_norm, c.rms_eps));
}

std::vector<int32_t> random_prompt(int n, int vocab, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> d(3, vocab - 1);
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& x : ids) x = d(rng);
  return ids;
}

// Last-position logits after prefilling `ids` in chunks; `greedy`, when given,
// receives that many greedy continuation tokens.
std::vector<float> engine_logits(const LoadedModel& m, const std::vector<int32_t>& ids, int chunk,
                                 std::vector<int32_t>* greedy = nullptr, int n_greedy = 0) {
  auto be = make_cpu_backend(2);
  ExecutorOptions eo;
  eo.capacity = static_cast<int64_t>(ids.size()) + n_greedy;
  eo.max_chunk = chunk;
  Executor exec(*be, m, eo);
  std::vector<float> out;
  for (size_t i = 0; i < ids.size(); i += chunk) {
    const int n = static_cast<int>(std::min<size_t>(chunk, ids.size() - i));
    out = exec.forward(ids.data() + i, n);
  }
  std::vector<float> last = out;
  for (int s = 0; greedy && s < n_greedy; ++s) {
    const int32_t t = argmax(last);
    greedy->push_back(t);
    last = exec.forward(&t, 1);
  }
  return out;
}

double max_rel(const std::vector<float>& a, const Vec& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_FALSE(std::isnan(a[i]));
    num = std::max(num, std::abs(a[i] - ref[i]));
    den = std::max(den, std::abs(ref[i]));
  }
  return num / den;
}

class TinyModels : public ::testing::TestWithParam<std::string> {};

TEST_P(TinyModels, EngineMatchesNaiveReference) {
  LoadedModel m = load_model("synthetic:" + GetParam() + ",dtype=f32");
  const auto ids = random_prompt(37, m.config.vocab_size, 11);
  const Vec ref = naive_forward(m, ids);
  EXPECT_LT(max_rel(engine_logits(m, ids, 16), ref), 1e-5);
}

TEST_P(TinyModels, ChunkedPrefillAgreesWithWholePrompt) {
  LoadedModel m = load_model("synthetic:" + GetParam() + ",dtype=f32");
  const auto ids = random_prompt(150, m.config.vocab_size, 5);
  std::vector<int32_t> whole_tokens;
  const std::vector<float> whole = engine_logits(m, ids, 150, &whole_tokens, 12);
  const Vec whole_d(whole.begin(), whole.end());
  for (int chunk : {1, 7, 64}) {
    std::vector<int32_t> tokens;
    const std::vector<float> c = engine_logits(m, ids, chunk, &tokens, 12);
    EXPECT_LT(max_rel(c, whole_d), 1e-5) << "chunk " << chunk;
    EXPECT_EQ(tokens, whole_tokens) << "greedy continuation after chunk " << chunk;
  }
}

INSTANTIATE_TEST_SUITE_P(Attention, TinyModels, ::testing::Values("tiny-mha", "tiny-gqa", "tiny-mqa"));

// Records the rows of the calls the executor makes past each layer's K/V store.
class RowsSeen final : public ForwardingBackend {
 public:
  using ForwardingBackend::ForwardingBackend;
  std::vector<int> matmul_rows_, mlp_rows_, attention_rows_;
  void matmul(const float* x, int n, const Mat& w, const Mat* bias, float* out) override {
    matmul_rows_.push_back(n);
    ForwardingBackend::matmul(x, n, w, bias, out);
  }
  void mlp(const void* x, DType dt, int n, const Mat& wgu, const Mat& wd, float* gu, float* out) override {
    mlp_rows_.push_back(n);
    ForwardingBackend::mlp(x, dt, n, wgu, wd, gu, out);
  }
  void attention(const AttnArgs& a) override {
    attention_rows_.push_back(a.n_q);
    ForwardingBackend::attention(a);
  }
};

// The last layer's outputs reach only the logits of the forward's last position, so
// past its K/V it runs for that row alone: its attention, O projection and MLP see
// one row, every other layer the whole chunk (the logits against the naive reference
// and across chunkings are the tests above).
TEST(Executor, LastLayerRunsForTheLastRowOnly) {
  LoadedModel m = load_model("synthetic:tiny-gqa,dtype=f32");
  auto cpu = make_cpu_backend(2);
  RowsSeen be(*cpu);
  ExecutorOptions eo;
  eo.capacity = 64;
  eo.max_chunk = 40;
  Executor exec(be, m, eo);
  const auto ids = random_prompt(40, m.config.vocab_size, 3);
  exec.forward(ids.data(), 40);
  const int layers = m.config.n_layers;
  std::vector<int> want(static_cast<size_t>(layers), 40);
  want.back() = 1;
  EXPECT_EQ(be.mlp_rows_, want);
  want.push_back(1);  // the LM head
  EXPECT_EQ(be.matmul_rows_, want) << "O projections, then the LM head";
  ASSERT_FALSE(be.attention_rows_.empty());
  EXPECT_EQ(be.attention_rows_.back(), 1);
  EXPECT_EQ(be.attention_rows_.front(), 40);
  EXPECT_EQ(exec.position(), 40) << "every row's K/V stored";
}

}  // namespace
}  // namespace headinfer
