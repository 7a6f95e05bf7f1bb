#include <gtest/gtest.h>

#include "format/hf_model.hpp"
#include "headinfer/error.hpp"
#include "test_assets.hpp"
#include "test_format_writers.hpp"

using namespace headinfer;
using namespace headinfer::test;

TEST(HfModel, LoadsStories260KZeroCopyAndTied) {
  HI_REQUIRE_ASSET("models/stories260K/model.safetensors");
  LoadedModel m = load_hf_model(asset("models/stories260K"));
  EXPECT_EQ(m.format, "hf");
  EXPECT_EQ(m.config.n_layers, 5);
  EXPECT_EQ(m.config.n_kv_heads, 4);
  EXPECT_EQ(m.weight_dtype, DType::F32);
  ASSERT_EQ(m.weights.layers.size(), 5u);
  EXPECT_EQ(m.weights.lm_head.data, m.weights.tok_embd.data);  // tied
  EXPECT_EQ(m.weights.layers[4].w_down.shape, (std::vector<int64_t>{64, 172}));
  EXPECT_EQ(m.weights.layers[0].wk.shape, (std::vector<int64_t>{32, 64}));
  EXPECT_TRUE(m.weights.layers[0].bq.empty());
  // 512*64 + 64 + 5 * (2*64 + 64*64*2 + 32*64*2 + 3*172*64): the known parameter count.
  EXPECT_EQ(m.weights.parameter_count(), 512 * 64 + 64 + 5 * (2 * 64 + 64 * 64 * 2 + 32 * 64 * 2 + 3 * 172 * 64));
  EXPECT_EQ(m.weights.total_bytes(), static_cast<size_t>(m.weights.parameter_count()) * 4);
  EXPECT_FALSE(m.weights.keep_alive.empty());
}

TEST(HfModel, ShardedCheckpointWithIndex) {
  TempDir dir;
  write_tiny_hf_model(dir.path(), tiny_hf_config(), /*sharded=*/true);
  LoadedModel m = load_hf_model(dir.path());
  EXPECT_EQ(m.weights.layers.size(), 2u);
  EXPECT_NE(m.weights.lm_head.data, m.weights.tok_embd.data);
  // The tensors come from both shards: layer 1's down projection is late in the map.
  EXPECT_EQ(m.weights.layers[1].w_down.shape, (std::vector<int64_t>{8, 16}));
  EXPECT_EQ(m.weights.keep_alive.size(), 2u);
  EXPECT_EQ(static_cast<const float*>(m.weights.out_norm.data)[0], 1.0f);  // second tensor written
}

TEST(HfModel, Qwen2BiasesAreLoaded) {
  TempDir dir;
  nlohmann::json c = tiny_hf_config();
  c["model_type"] = "qwen2";
  c["architectures"] = {"Qwen2ForCausalLM"};
  write_tiny_hf_model(dir.path(), c);
  LoadedModel m = load_hf_model(dir.path());
  EXPECT_TRUE(m.config.qkv_bias);
  EXPECT_EQ(m.weights.layers[0].bq.shape, (std::vector<int64_t>{8}));
  EXPECT_EQ(m.weights.layers[0].bk.shape, (std::vector<int64_t>{4}));
}

TEST(HfModel, WrongShapeNamesFileTensorAndShapes) {
  TempDir dir;
  nlohmann::json c = tiny_hf_config();
  write_tiny_hf_model(dir.path(), c);
  c["intermediate_size"] = 12;  // config disagrees with the tensors
  write_text(dir.file("config.json"), c.dump());
  try {
    load_hf_model(dir.path());
    FAIL() << "no error";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find(dir.file("model.safetensors") +
                       ": tensor 'model.layers.0.mlp.gate_proj.weight': shape: expected [12, 8], got [16, 8]"),
              std::string::npos)
        << msg;
  }
}

TEST(HfModel, TiedCheckpointMayKeepLmHead) {
  TempDir dir;
  nlohmann::json c = tiny_hf_config();
  write_tiny_hf_model(dir.path(), c);
  c["tie_word_embeddings"] = true;
  write_text(dir.file("config.json"), c.dump());
  LoadedModel m = load_hf_model(dir.path());
  EXPECT_EQ(m.weights.lm_head.data, m.weights.tok_embd.data);
}
