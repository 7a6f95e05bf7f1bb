#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "format/gguf_model.hpp"
#include "format/hf_model.hpp"
#include "format/weight_utils.hpp"
#include "headinfer/error.hpp"
#include "test_assets.hpp"
#include "test_format_writers.hpp"

using namespace headinfer;
using namespace headinfer::test;

namespace {

std::vector<float> values(const Tensor& t) {
  std::vector<float> v(static_cast<size_t>(t.numel()));
  to_f32(t.dtype, t.data, v.data(), t.numel());
  return v;
}

std::vector<std::pair<const Tensor*, const Tensor*>> all_pairs(const ModelWeights& a, const ModelWeights& b) {
  std::vector<std::pair<const Tensor*, const Tensor*>> p = {
      {&a.tok_embd, &b.tok_embd}, {&a.out_norm, &b.out_norm}, {&a.lm_head, &b.lm_head}};
  for (size_t i = 0; i < a.layers.size(); ++i) {
    const LayerWeights &x = a.layers[i], &y = b.layers[i];
    for (auto [s, t] : {std::pair{&x.attn_norm, &y.attn_norm}, {&x.ffn_norm, &y.ffn_norm}, {&x.wq, &y.wq},
                        {&x.wk, &y.wk}, {&x.wv, &y.wv}, {&x.wo, &y.wo}, {&x.w_gate, &y.w_gate}, {&x.w_up, &y.w_up},
                        {&x.w_down, &y.w_down}})
      p.emplace_back(s, t);
  }
  return p;
}

// Max |a-b| relative to the tensor's largest magnitude.
double rel_error(const Tensor& a, const Tensor& b) {
  auto x = values(a), y = values(b);
  double max_abs = 0, max_diff = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    max_abs = std::max(max_abs, std::abs(static_cast<double>(x[i])));
    max_diff = std::max(max_diff, std::abs(static_cast<double>(x[i]) - y[i]));
  }
  return max_abs > 0 ? max_diff / max_abs : max_diff;
}

void compare_with_hf(const std::string& gguf, double tolerance) {
  LoadedModel hf = load_hf_model(asset("models/stories260K"));
  LoadedModel gg = load_gguf_model(asset(gguf));
  const ModelConfig &a = hf.config, &b = gg.config;
  EXPECT_EQ(a.n_layers, b.n_layers);
  EXPECT_EQ(a.hidden, b.hidden);
  EXPECT_EQ(a.n_heads, b.n_heads);
  EXPECT_EQ(a.n_kv_heads, b.n_kv_heads);
  EXPECT_EQ(a.head_dim, b.head_dim);
  EXPECT_EQ(a.ffn_hidden, b.ffn_hidden);
  EXPECT_EQ(a.vocab_size, b.vocab_size);
  EXPECT_EQ(a.max_position, b.max_position);
  EXPECT_EQ(a.rope_theta, b.rope_theta);
  EXPECT_FLOAT_EQ(a.rms_eps, b.rms_eps);
  EXPECT_EQ(a.tie_embeddings, b.tie_embeddings);
  EXPECT_EQ(a.bos_id, b.bos_id);
  EXPECT_EQ(a.eos_ids, b.eos_ids);
  ASSERT_EQ(gg.weights.layers.size(), hf.weights.layers.size());
  for (auto [x, y] : all_pairs(hf.weights, gg.weights)) {
    SCOPED_TRACE(x->name + " vs " + y->name);
    ASSERT_EQ(x->shape, y->shape);
    if (tolerance == 0) {
      ASSERT_EQ(y->dtype, DType::F32);
      EXPECT_EQ(std::memcmp(x->data, y->data, x->nbytes()), 0);
    } else {
      EXPECT_LE(rel_error(*x, *y), tolerance);
    }
  }
}

}  // namespace

TEST(GgufModel, F32IsBitIdenticalToHfAfterUnpermute) {
  HI_REQUIRE_ASSET("models/stories260K/model.safetensors");
  HI_REQUIRE_ASSET("models/stories260K-gguf/stories260K-f32.gguf");
  compare_with_hf("models/stories260K-gguf/stories260K-f32.gguf", 0.0);
}

TEST(GgufModel, F16CloseToHf) {
  HI_REQUIRE_ASSET("models/stories260K/model.safetensors");
  HI_REQUIRE_ASSET("models/stories260K-gguf/stories260K-f16.gguf");
  compare_with_hf("models/stories260K-gguf/stories260K-f16.gguf", 1e-2);
}

TEST(GgufModel, Q8_0DequantizedAndCloseToHf) {
  HI_REQUIRE_ASSET("models/stories260K/model.safetensors");
  HI_REQUIRE_ASSET("models/stories260K-gguf/stories260K-q8_0.gguf");
  compare_with_hf("models/stories260K-gguf/stories260K-q8_0.gguf", 5e-2);
  LoadedModel m = load_gguf_model(asset("models/stories260K-gguf/stories260K-q8_0.gguf"));
  // Q8_0 matrices become F32, and the F16 ones (rows of 172) follow so all match.
  EXPECT_EQ(m.weight_dtype, DType::F32);
  EXPECT_EQ(m.weights.layers[0].w_down.dtype, DType::F32);
  EXPECT_EQ(m.weights.layers[0].wq.dtype, DType::F32);
}

TEST(GgufModel, Llama2TinyRandom) {
  HI_REQUIRE_ASSET("models/llama-2-tiny-random.gguf");
  LoadedModel m = load_gguf_model(asset("models/llama-2-tiny-random.gguf"));
  EXPECT_EQ(m.format, "gguf");
  EXPECT_EQ(m.config.n_layers, 1);
  EXPECT_EQ(m.config.hidden, 8);
  EXPECT_EQ(m.config.n_heads, 2);
  EXPECT_EQ(m.config.head_dim, 4);
  EXPECT_EQ(m.config.vocab_size, 32000);
  EXPECT_EQ(m.config.max_position, 4096);
  EXPECT_EQ(m.config.rope_theta, 10000.0);
  EXPECT_FALSE(m.config.tie_embeddings);
  EXPECT_EQ(m.weight_dtype, DType::F16);
  EXPECT_EQ(m.weights.lm_head.shape, (std::vector<int64_t>{32000, 8}));
  EXPECT_EQ(m.weights.out_norm.dtype, DType::F32);
}

TEST(GgufModel, UnpermuteRestoresRotateHalfRows) {
  // One head of dim 4: HF rows r0 r1 r2 r3 are stored interleaved as r0 r2 r1 r3.
  std::vector<float> stored = {0, 0, 2, 2, 1, 1, 3, 3};  // 4 rows x 2 cols
  Tensor t;
  t.name = "q";
  t.shape = {4, 2};
  t.data = stored.data();
  ModelWeights keep;
  Tensor u = unpermute_rope_rows(t, 1, keep);
  auto* v = static_cast<const float*>(u.data);
  for (int r = 0; r < 4; ++r) EXPECT_EQ(v[r * 2], r);
}

TEST(GgufModel, TiedWhenOutputAbsentAndQwen2NotPermuted) {
  GgufWriter w = tiny_gguf_model("qwen2");
  w.tensor_f32("blk.0.attn_q.bias", {8}, iota_f32(8));
  w.tensor_f32("blk.0.attn_k.bias", {4}, iota_f32(4));
  w.tensor_f32("blk.0.attn_v.bias", {4}, iota_f32(4));
  TempDir dir;
  write_file(dir.file("m.gguf"), w.bytes());
  LoadedModel m = load_gguf_model(dir.file("m.gguf"));
  EXPECT_TRUE(m.config.qkv_bias);
  // Qwen2 files keep HF's row order: q rows come back unchanged.
  EXPECT_EQ(static_cast<const float*>(m.weights.layers[0].wq.data)[8], 8.0f);
  EXPECT_EQ(static_cast<const float*>(m.weights.layers[0].bq.data)[1], 1.0f);
}
