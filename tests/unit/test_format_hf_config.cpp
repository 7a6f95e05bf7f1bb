#include <gtest/gtest.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "format/hf_config.hpp"
#include "headinfer/error.hpp"
#include "test_assets.hpp"

using namespace headinfer;
using json = nlohmann::json;

namespace {

ModelConfig config_file(const std::string& name) { return load_hf_config(test::asset("configs/" + name)); }

std::string error_of(const json& j) {
  try {
    parse_hf_config(j, "/m/config.json").validate("/m/config.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

json minimal() {
  return json{{"model_type", "llama"}, {"hidden_size", 64}, {"intermediate_size", 128}, {"num_hidden_layers", 2},
              {"num_attention_heads", 4}, {"vocab_size", 100}, {"max_position_embeddings", 256}};
}

}  // namespace

TEST(HfConfig, EverySharedConfigParsesAndValidates) {
  HI_REQUIRE_ASSET("configs");
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator(test::asset("configs"))) {
    if (e.path().extension() != ".json") continue;
    SCOPED_TRACE(e.path().string());
    ModelConfig c = load_hf_config(e.path().string());
    EXPECT_GT(c.n_layers, 0);
    ++n;
  }
  EXPECT_GE(n, 6);
}

TEST(HfConfig, Llama31_8B) {
  HI_REQUIRE_ASSET("configs/Llama-3.1-8B.json");
  ModelConfig c = config_file("Llama-3.1-8B.json");
  EXPECT_EQ(c.arch, "llama");
  EXPECT_EQ(c.n_layers, 32);
  EXPECT_EQ(c.hidden, 4096);
  EXPECT_EQ(c.n_heads, 32);
  EXPECT_EQ(c.n_kv_heads, 8);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.ffn_hidden, 14336);
  EXPECT_EQ(c.vocab_size, 128256);
  EXPECT_EQ(c.max_position, 131072);
  EXPECT_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::Llama3);
  EXPECT_EQ(c.rope_scaling.factor, 8.0);
  EXPECT_EQ(c.rope_scaling.low_freq_factor, 1.0);
  EXPECT_EQ(c.rope_scaling.high_freq_factor, 4.0);
  EXPECT_EQ(c.rope_scaling.original_max_position, 8192);
  EXPECT_FLOAT_EQ(c.rms_eps, 1e-5f);
  EXPECT_FALSE(c.tie_embeddings);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_EQ(c.bos_id, 128000);
  EXPECT_EQ(c.eos_ids, (std::vector<int>{128001}));
}

TEST(HfConfig, Llama31InstructEosList) {
  HI_REQUIRE_ASSET("configs/Llama-3.1-8B-Instruct.tt-metal.json");
  ModelConfig c = config_file("Llama-3.1-8B-Instruct.tt-metal.json");
  EXPECT_EQ(c.eos_ids, (std::vector<int>{128001, 128008, 128009}));
}

TEST(HfConfig, Llama32_1B) {
  HI_REQUIRE_ASSET("configs/Llama-3.2-1B.json");
  ModelConfig c = config_file("Llama-3.2-1B.json");
  EXPECT_EQ(c.n_layers, 16);
  EXPECT_EQ(c.hidden, 2048);
  EXPECT_EQ(c.n_heads, 32);
  EXPECT_EQ(c.n_kv_heads, 8);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.ffn_hidden, 8192);
  EXPECT_TRUE(c.tie_embeddings);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::Llama3);
  EXPECT_EQ(c.rope_scaling.factor, 32.0);
}

TEST(HfConfig, Llama2_7B) {
  HI_REQUIRE_ASSET("configs/Llama-2-7b-hf.RECONSTRUCTED.json");
  for (const char* name : {"Llama-2-7b-hf.RECONSTRUCTED.json", "Llama-2-7b-hf.resaved-HPMLL.json"}) {
    ModelConfig c = config_file(name);
    EXPECT_EQ(c.n_layers, 32);
    EXPECT_EQ(c.n_kv_heads, 32);  // MHA
    EXPECT_EQ(c.ffn_hidden, 11008);
    EXPECT_EQ(c.vocab_size, 32000);
    EXPECT_EQ(c.max_position, 4096);
    EXPECT_EQ(c.rope_theta, 10000.0);  // absent in the first: default
    EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::None);  // rope_scaling: null
    EXPECT_EQ(c.bos_id, 1);
    EXPECT_EQ(c.eos_ids, (std::vector<int>{2}));
  }
}

TEST(HfConfig, Mistral7Bv03) {
  HI_REQUIRE_ASSET("configs/Mistral-7B-Instruct-v0.3.full-dump.json");
  ModelConfig c = config_file("Mistral-7B-Instruct-v0.3.full-dump.json");
  EXPECT_EQ(c.arch, "mistral");
  EXPECT_EQ(c.n_layers, 32);
  EXPECT_EQ(c.n_kv_heads, 8);
  EXPECT_EQ(c.vocab_size, 32768);
  EXPECT_EQ(c.max_position, 32768);
  EXPECT_EQ(c.rope_theta, 1000000.0);
  EXPECT_EQ(c.head_dim, 128);
}

TEST(HfConfig, Qwen25_7B) {
  HI_REQUIRE_ASSET("configs/Qwen2.5-7B.json");
  ModelConfig c = config_file("Qwen2.5-7B.json");
  EXPECT_EQ(c.arch, "qwen2");
  EXPECT_EQ(c.n_layers, 28);
  EXPECT_EQ(c.hidden, 3584);
  EXPECT_EQ(c.n_heads, 28);
  EXPECT_EQ(c.n_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.ffn_hidden, 18944);
  EXPECT_EQ(c.vocab_size, 152064);
  EXPECT_EQ(c.max_position, 131072);
  EXPECT_FLOAT_EQ(c.rms_eps, 1e-6f);
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_EQ(c.eos_ids, (std::vector<int>{151643}));
}

TEST(HfConfig, DefaultsAndArchitecturesFallback) {
  json j = minimal();
  j.erase("model_type");
  j["architectures"] = {"MistralForCausalLM"};
  ModelConfig c = parse_hf_config(j, "x");
  EXPECT_EQ(c.arch, "mistral");
  EXPECT_EQ(c.n_kv_heads, 4);  // absent: = heads
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.bos_id, -1);
  EXPECT_TRUE(c.eos_ids.empty());
}

TEST(HfConfig, RopeScalingVariants) {
  json j = minimal();
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  EXPECT_EQ(parse_hf_config(j, "x").rope_scaling.type, RopeScaling::Type::Linear);
  j["rope_scaling"] = {{"rope_type", "dynamic"}, {"factor", 3.0}};
  ModelConfig c = parse_hf_config(j, "x");
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::Dynamic);
  EXPECT_EQ(c.rope_scaling.factor, 3.0);
  j["rope_scaling"] = {{"rope_type", "default"}};
  EXPECT_EQ(parse_hf_config(j, "x").rope_scaling.type, RopeScaling::Type::None);
  j["rope_scaling"] = nullptr;
  EXPECT_EQ(parse_hf_config(j, "x").rope_scaling.type, RopeScaling::Type::None);
  j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  EXPECT_NE(error_of(j).find("/m/config.json: rope_scaling.rope_type: unsupported value 'yarn'"), std::string::npos);
}

// transformers 5 writes rope_theta and the scaling inside rope_parameters.
TEST(HfConfig, Transformers5RopeParameters) {
  json j = minimal();
  j["rope_parameters"] = {{"factor", 8.0}, {"high_freq_factor", 4.0}, {"low_freq_factor", 1.0},
                          {"original_max_position_embeddings", 8192}, {"rope_theta", 500000.0},
                          {"rope_type", "llama3"}};
  ModelConfig c = parse_hf_config(j, "x");
  EXPECT_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::Llama3);
  EXPECT_EQ(c.rope_scaling.factor, 8.0);
  j["rope_parameters"] = {{"rope_theta", 1e6}, {"rope_type", "default"}};
  c = parse_hf_config(j, "x");
  EXPECT_EQ(c.rope_theta, 1e6);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::None);
}

TEST(HfConfig, ErrorsNameFileAndField) {
  json j = minimal();
  j["model_type"] = "gpt_neox";
  EXPECT_NE(error_of(j).find("/m/config.json: model_type: unsupported architecture 'gpt_neox'"), std::string::npos);
  j = minimal();
  j.erase("hidden_size");
  EXPECT_NE(error_of(j).find("/m/config.json: hidden_size: missing"), std::string::npos);
  j = minimal();
  j["num_attention_heads"] = "four";
  EXPECT_NE(error_of(j).find("/m/config.json: num_attention_heads: expected an integer"), std::string::npos);
  j = minimal();
  j["num_key_value_heads"] = 3;
  EXPECT_NE(error_of(j).find("num_key_value_heads: 3 does not divide"), std::string::npos);
  j = minimal();
  j["rope_scaling"] = {{"rope_type", "linear"}};
  EXPECT_NE(error_of(j).find("rope_scaling.factor: missing"), std::string::npos);
  EXPECT_NE(error_of(json::array()).find("/m/config.json: expected a JSON object"), std::string::npos);
}
