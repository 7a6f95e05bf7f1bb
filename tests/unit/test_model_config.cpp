#include <gtest/gtest.h>

#include <cmath>

#include "headinfer/error.hpp"
#include "model/model_config.hpp"

using namespace headinfer;

namespace {

ModelConfig base(int hidden, int heads, int head_dim, int64_t max_pos, double theta) {
  ModelConfig c;
  c.n_layers = 1;
  c.hidden = hidden;
  c.n_heads = heads;
  c.n_kv_heads = heads;
  c.head_dim = head_dim;
  c.ffn_hidden = 4 * hidden;
  c.vocab_size = 100;
  c.max_position = max_pos;
  c.rope_theta = theta;
  return c;
}

// HF computes inv_freq in float32, so agreement is to float precision.
void expect_close(const std::vector<double>& got, size_t i, double want) {
  ASSERT_LT(i, got.size());
  EXPECT_NEAR(got[i], want, std::abs(want) * 2e-6) << "index " << i;
}

std::string error_of(const ModelConfig& c) {
  try {
    c.validate("cfg.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

// Expected values in the RoPE tests below were produced with Python transformers 5.23
// (torch 2.15) on this machine, e.g.
//   from transformers import LlamaConfig
//   from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
//   c = LlamaConfig(hidden_size=128, num_attention_heads=8, head_dim=16, max_position_embeddings=4096,
//                   rope_parameters={"rope_type": "linear", "factor": 4.0, "rope_theta": 10000.0})
//   ROPE_INIT_FUNCTIONS["linear"](c, "cpu", None)[0].tolist()
// and likewise for "dynamic" (seq_len 4096 and 10000) and "llama3" (the Llama-3.1-8B and
// Llama-3.2-1B rope parameters).

TEST(RopeInvFreq, DefaultIsThetaPower) {
  ModelConfig c = base(128, 8, 16, 4096, 10000.0);
  auto f = rope_inv_freq(c, 100);
  ASSERT_EQ(f.size(), 8u);
  for (int i = 0; i < 8; ++i) EXPECT_DOUBLE_EQ(f[i], std::pow(10000.0, -2.0 * i / 16));
}

TEST(RopeInvFreq, LinearMatchesTransformers) {
  ModelConfig c = base(128, 8, 16, 4096, 10000.0);
  c.rope_scaling.type = RopeScaling::Type::Linear;
  c.rope_scaling.factor = 4.0;
  const double want[] = {0.25, 0.07905694097280502, 0.02500000037252903, 0.007905694656074047,
                         0.0024999999441206455, 0.0007905694656074047, 0.0002500000118743628, 7.905694656074047e-05};
  auto f = rope_inv_freq(c, 100);
  for (size_t i = 0; i < 8; ++i) expect_close(f, i, want[i]);
}

TEST(RopeInvFreq, DynamicMatchesTransformers) {
  ModelConfig c = base(128, 8, 16, 4096, 10000.0);
  c.rope_scaling.type = RopeScaling::Type::Dynamic;
  c.rope_scaling.factor = 2.0;
  // Within the trained context the base is unchanged.
  const double at_4096[] = {1.0, 0.3162277638912201, 0.10000000149011612, 0.03162277862429619,
                            0.009999999776482582, 0.003162277862429619, 0.0010000000474974513, 0.0003162277862429619};
  const double at_10000[] = {1.0, 0.26051709055900574, 0.0678691565990448, 0.017681075260043144,
                             0.00460622226819396, 0.001199999707750976, 0.00031262042466551065, 8.144296589307487e-05};
  auto f = rope_inv_freq(c, 4096);
  for (size_t i = 0; i < 8; ++i) expect_close(f, i, at_4096[i]);
  f = rope_inv_freq(c, 10000);
  for (size_t i = 0; i < 8; ++i) expect_close(f, i, at_10000[i]);
}

TEST(RopeInvFreq, Llama3MatchesTransformersLlama31) {
  ModelConfig c = base(4096, 32, 128, 131072, 500000.0);
  c.rope_scaling.type = RopeScaling::Type::Llama3;
  c.rope_scaling.factor = 8.0;
  c.rope_scaling.low_freq_factor = 1.0;
  c.rope_scaling.high_freq_factor = 4.0;
  c.rope_scaling.original_max_position = 8192;
  const std::pair<size_t, double> want[] = {
      {0, 1.0}, {1, 0.8146172165870667}, {10, 0.12868738174438477}, {20, 0.016560440883040428},
      {30, 0.0013718936825171113}, {35, 9.556212171446532e-05}, {38, 5.165906986803748e-05},
      {40, 3.428102354519069e-05}, {42, 2.2748929040972143e-05}, {45, 1.2297638932068367e-05},
      {46, 1.0017868589784484e-05}, {50, 4.411534519022098e-06}, {55, 1.5825507944100536e-06},
      {63, 3.068925877869333e-07}};
  auto f = rope_inv_freq(c, 1);
  ASSERT_EQ(f.size(), 64u);
  for (auto [i, v] : want) expect_close(f, i, v);
}

TEST(RopeInvFreq, Llama3MatchesTransformersLlama32) {
  ModelConfig c = base(2048, 32, 64, 131072, 500000.0);
  c.rope_scaling.type = RopeScaling::Type::Llama3;
  c.rope_scaling.factor = 32.0;
  const double want[] = {1.0, 0.663601279258728, 0.44036662578582764, 0.2922278344631195, 0.193922758102417,
                         0.12868738174438477, 0.08539710193872452, 0.05666961893439293, 0.03760603070259094,
                         0.02495540864765644, 0.016560440883040428, 0.010989529080688953, 0.00729266507551074,
                         0.00483942124992609, 0.0032114461064338684, 0.0012905480107292533, 0.000429556705057621,
                         9.708286233944818e-05, 1.9461638657958247e-05, 1.291476746700937e-05,
                         8.570255886297673e-06, 5.687232260243036e-06, 3.7740544485131977e-06,
                         2.504467147446121e-06, 1.6619674170215148e-06, 1.1028836297555245e-06,
                         7.318749339901842e-07, 4.856731266045244e-07, 3.2229328894572973e-07,
                         2.1387423032592778e-07, 1.4192720243499934e-07, 9.418306490260875e-08};
  auto f = rope_inv_freq(c, 1);
  ASSERT_EQ(f.size(), 32u);
  for (size_t i = 0; i < 32; ++i) expect_close(f, i, want[i]);
}

TEST(RopeInvFreq, FreqFactorsDivide) {
  ModelConfig c = base(128, 8, 16, 4096, 10000.0);
  c.rope_freq_factors.assign(8, 1.0);
  c.rope_freq_factors[7] = 8.0;
  auto f = rope_inv_freq(c, 1);
  EXPECT_DOUBLE_EQ(f[7], std::pow(10000.0, -14.0 / 16) / 8.0);
  EXPECT_DOUBLE_EQ(f[0], 1.0);
}

TEST(RopeScalingName, Names) {
  EXPECT_STREQ(rope_scaling_name(RopeScaling::Type::None), "none");
  EXPECT_STREQ(rope_scaling_name(RopeScaling::Type::Linear), "linear");
  EXPECT_STREQ(rope_scaling_name(RopeScaling::Type::Dynamic), "dynamic");
  EXPECT_STREQ(rope_scaling_name(RopeScaling::Type::Llama3), "llama3");
}

TEST(ModelConfigValidate, AcceptsConsistentConfig) {
  ModelConfig c = base(128, 8, 16, 4096, 10000.0);
  c.n_kv_heads = 2;
  c.bos_id = 1;
  c.eos_ids = {2};
  EXPECT_NO_THROW(c.validate("cfg.json"));
  EXPECT_EQ(c.q_per_kv(), 4);
  EXPECT_EQ(c.kv_bytes_per_token(2), 2 * 1 * 2 * 16 * 2);
}

TEST(ModelConfigValidate, RejectsInconsistentFieldsNamingThem) {
  ModelConfig c = base(128, 8, 16, 4096, 10000.0);
  c.n_kv_heads = 3;
  EXPECT_NE(error_of(c).find("cfg.json: num_key_value_heads: 3 does not divide num_attention_heads 8"),
            std::string::npos);
  c = base(128, 8, 16, 4096, 10000.0);
  c.n_layers = 0;
  EXPECT_NE(error_of(c).find("cfg.json: num_hidden_layers: expected a positive value, got 0"), std::string::npos);
  c = base(128, 8, 15, 4096, 10000.0);
  EXPECT_NE(error_of(c).find("head_dim"), std::string::npos);
  c = base(128, 8, 16, 4096, 10000.0);
  c.rms_eps = 0;
  EXPECT_NE(error_of(c).find("rms_norm_eps"), std::string::npos);
  c = base(128, 8, 16, 4096, 10000.0);
  c.eos_ids = {100};
  EXPECT_NE(error_of(c).find("eos_token_id: 100 is outside the vocabulary"), std::string::npos);
  c = base(128, 8, 16, 4096, 10000.0);
  c.rope_scaling.type = RopeScaling::Type::Llama3;
  c.rope_scaling.factor = 8;
  c.rope_scaling.high_freq_factor = 0.5;
  EXPECT_NE(error_of(c).find("low_freq_factor < high_freq_factor"), std::string::npos);
  c = base(128, 8, 16, 0, 10000.0);
  EXPECT_NE(error_of(c).find("max_position_embeddings"), std::string::npos);
}
