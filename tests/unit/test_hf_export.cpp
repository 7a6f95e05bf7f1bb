// `headinfer export` and export_hf_model: a model written as an HF directory loads
// back through the engine's HF loader with the same config and the same weights, so
// its logits equal the original's bit for bit; sharded output included.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "backend/backend.hpp"
#include "cli_runner.hpp"
#include "format/hf_config.hpp"
#include "format/hf_export.hpp"
#include "format/model_loader.hpp"
#include "format/synthetic.hpp"
#include "headinfer/error.hpp"
#include "offload_runs.hpp"

namespace headinfer {
namespace {

namespace fs = std::filesystem;

std::string fresh_dir(const std::string& name) {
  const fs::path d = fs::path(::testing::TempDir()) / ("hf_export_" + std::to_string(getpid()) + "_" + name);
  fs::remove_all(d);
  return d.string();
}

void expect_same_config(const ModelConfig& a, const ModelConfig& b) {
  EXPECT_EQ(a.arch, b.arch);
  EXPECT_EQ(a.n_layers, b.n_layers);
  EXPECT_EQ(a.hidden, b.hidden);
  EXPECT_EQ(a.n_heads, b.n_heads);
  EXPECT_EQ(a.n_kv_heads, b.n_kv_heads);
  EXPECT_EQ(a.head_dim, b.head_dim);
  EXPECT_EQ(a.ffn_hidden, b.ffn_hidden);
  EXPECT_EQ(a.vocab_size, b.vocab_size);
  EXPECT_EQ(a.max_position, b.max_position);
  EXPECT_EQ(a.rope_theta, b.rope_theta);
  EXPECT_EQ(a.rope_scaling.type, b.rope_scaling.type);
  EXPECT_EQ(a.rope_scaling.factor, b.rope_scaling.factor);
  EXPECT_EQ(a.rope_scaling.low_freq_factor, b.rope_scaling.low_freq_factor);
  EXPECT_EQ(a.rope_scaling.high_freq_factor, b.rope_scaling.high_freq_factor);
  EXPECT_EQ(a.rope_scaling.original_max_position, b.rope_scaling.original_max_position);
  EXPECT_EQ(a.rms_eps, b.rms_eps);
  EXPECT_EQ(a.tie_embeddings, b.tie_embeddings);
  EXPECT_EQ(a.qkv_bias, b.qkv_bias);
  EXPECT_EQ(a.bos_id, b.bos_id);
  EXPECT_EQ(a.eos_ids, b.eos_ids);
}

void expect_same_bytes(const Tensor& a, const Tensor& b, const char* what) {
  ASSERT_EQ(a.shape, b.shape) << what;
  ASSERT_EQ(a.dtype, b.dtype) << what;
  EXPECT_EQ(0, std::memcmp(a.data, b.data, a.nbytes())) << what;
}

std::vector<std::vector<float>> logits_of(const LoadedModel& m) {
  auto be = make_cpu_backend(2);
  offload_test::RunSpec spec;
  spec.chunk = 8;
  spec.kv_dtype = m.weight_dtype == DType::BF16 ? DType::BF16 : DType::F32;
  spec.schedule = KvSchedule::all_resident(m.config, spec.kv_dtype);
  return offload_test::run(*be, m, offload_test::prompt_for(21, m.config.vocab_size, 9), 3, spec);
}

void expect_round_trip(const std::string& spec, const HfExportOptions& opts, int want_shards) {
  SCOPED_TRACE(spec);
  const LoadedModel orig = load_model(spec);
  const std::string dir = fresh_dir(std::to_string(std::hash<std::string>{}(spec)) + "_" +
                                    std::to_string(opts.max_shard_bytes));
  const HfExportResult r = export_hf_model(orig, dir, opts);
  if (want_shards > 0) EXPECT_EQ(r.shards, want_shards);
  else EXPECT_GT(r.shards, 1);
  EXPECT_EQ(fs::exists(dir + "/model.safetensors.index.json"), r.shards > 1);
  const LoadedModel back = load_model(dir);
  EXPECT_EQ(back.format, "hf");
  expect_same_config(orig.config, back.config);
  EXPECT_EQ(back.weight_dtype, orig.weight_dtype);
  expect_same_bytes(orig.weights.tok_embd, back.weights.tok_embd, "tok_embd");
  expect_same_bytes(orig.weights.lm_head, back.weights.lm_head, "lm_head");
  expect_same_bytes(orig.weights.out_norm, back.weights.out_norm, "out_norm");
  const LayerWeights &a = orig.weights.layers.back(), &b = back.weights.layers.back();
  expect_same_bytes(a.wq, b.wq, "wq");
  expect_same_bytes(a.wk, b.wk, "wk");
  expect_same_bytes(a.w_down, b.w_down, "w_down");
  expect_same_bytes(a.ffn_norm, b.ffn_norm, "ffn_norm");
  if (orig.config.qkv_bias) expect_same_bytes(a.bv, b.bv, "bv");
  const auto want = logits_of(orig), got = logits_of(back);
  ASSERT_EQ(want.size(), got.size());
  for (size_t i = 0; i < want.size(); ++i)
    EXPECT_EQ(0, std::memcmp(want[i].data(), got[i].data(), want[i].size() * sizeof(float))) << "step " << i;
  fs::remove_all(dir);
}

TEST(HfExport, TinyPresetsLoadBackWithTheSameLogits) {
  for (const char* spec : {"synthetic:tiny-gqa", "synthetic:tiny-mqa", "synthetic:tiny-qwen2",
                           "synthetic:tiny-llama3", "synthetic:tiny-mha,dtype=f32,layers=1"})
    expect_round_trip(spec, {}, 1);
}

TEST(HfExport, ShardsUnderTheLimitWithAnIndex) {
  HfExportOptions o;
  o.max_shard_bytes = 100 << 10;  // tiny-gqa: 320 x 128 BF16 embeddings are 80 KiB
  expect_round_trip("synthetic:tiny-gqa", o, -1);
  const std::string dir = fresh_dir("shards");
  const HfExportResult r = export_hf_model(load_model("synthetic:tiny-gqa"), dir, o);
  char first[64];
  std::snprintf(first, sizeof first, "model-00001-of-%05d.safetensors", r.shards);
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".safetensors") {
      // Header and padding are the only bytes past the limit, and a big tensor may
      // stand alone.
      EXPECT_LE(static_cast<int64_t>(fs::file_size(e.path())), o.max_shard_bytes + 4096) << e.path();
    }
  std::ifstream in(dir + "/model.safetensors.index.json");
  const auto index = nlohmann::json::parse(in);
  EXPECT_GT(index["metadata"]["total_size"].get<int64_t>(), 0);
  EXPECT_EQ(index["weight_map"]["model.embed_tokens.weight"], first);
  // Re-exporting as one file removes the old shards.
  export_hf_model(load_model("synthetic:tiny-gqa"), dir);
  EXPECT_FALSE(fs::exists(dir + "/model.safetensors.index.json"));
  EXPECT_FALSE(fs::exists(dir + "/" + first));
  fs::remove_all(dir);
}

TEST(HfExport, ConfigOfTheBigPresetsParsesBack) {
  for (const std::string& p : synthetic_presets()) {
    SCOPED_TRACE(p);
    const ModelConfig c = synthetic_config(parse_synthetic_spec("synthetic:" + p));
    const auto j = hf_config_json(c, DType::BF16);
    EXPECT_EQ(j["torch_dtype"], "bfloat16");
    const ModelConfig back = parse_hf_config(nlohmann::json::parse(j.dump()), "config.json");
    expect_same_config(c, back);
  }
  const ModelConfig c = synthetic_config(parse_synthetic_spec("synthetic:llama-3.1-8b"));
  const auto j = hf_config_json(c, DType::BF16);
  EXPECT_EQ(j["architectures"][0], "LlamaForCausalLM");
  EXPECT_EQ(j["rope_scaling"]["rope_type"], "llama3");
  EXPECT_EQ(j["rms_norm_eps"].get<double>(), 1e-5);  // the decimal, not the float's expansion
  EXPECT_EQ(hf_config_json(synthetic_config(parse_synthetic_spec("synthetic:qwen2.5-7b")), DType::F32)
                ["architectures"][0], "Qwen2ForCausalLM");
  EXPECT_EQ(hf_config_json(synthetic_config(parse_synthetic_spec("synthetic:mistral-7b")), DType::BF16)
                ["architectures"][0], "MistralForCausalLM");
}

TEST(HfExport, RefusesWhatConfigJsonCannotSay) {
  ModelConfig c = synthetic_config(parse_synthetic_spec("synthetic:tiny-gqa"));
  c.rope_freq_factors.assign(16, 1.0);
  try {
    hf_config_json(c, DType::BF16);
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("rope_freq_factors"), std::string::npos) << e.what();
  }
}

TEST(HfExport, CommandLine) {
  const std::string dir = fresh_dir("cli");
  auto r = test::cli("export -m synthetic:tiny-gqa,layers=2 -o " + dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("1 file"), std::string::npos) << r.err;
  r = test::cli("info -m " + dir);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("2 layers"), std::string::npos) << r.out;
  r = test::cli("export -m synthetic:tiny-gqa");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("--output"), std::string::npos) << r.err;
  r = test::cli("export -m synthetic:tiny-gqa -o " + dir + " --max-shard-size lots");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("--max-shard-size"), std::string::npos) << r.err;
  fs::remove_all(dir);
}

// The plumbing of scripts/reference/hf_parity.py: generate reads the exact prompt
// ids and dumps the last prompt logits (bit for bit the Executor's) and greedy ids.
TEST(HfExport, GenerateDumpsPromptLogitsAndGreedyIds) {
  const std::string dir = fresh_dir("dump");
  fs::create_directories(dir);
  const auto prompt = offload_test::prompt_for(21, 320, 9);
  {
    std::ofstream ids(dir + "/ids.txt");
    for (int32_t id : prompt) ids << id << (id % 3 ? " " : ",\n");
  }
  const auto r = test::cli("generate -m synthetic:tiny-gqa --backend cpu -t 2 --prompt-ids " + dir +
                           "/ids.txt -n 3 --temp 0 --ignore-eos --chunk-size 8 --dump-logits " + dir + "/out.json");
  ASSERT_EQ(r.code, 0) << r.err;
  std::ifstream in(dir + "/out.json");
  const auto j = nlohmann::json::parse(in);
  EXPECT_EQ(j["prompt_tokens"], 21);
  EXPECT_EQ(j["vocab_size"], 320);
  const auto got = j["last_prompt_logits"].get<std::vector<float>>();
  const auto want = logits_of(load_model("synthetic:tiny-gqa"));  // same prompt, chunk and KV type
  ASSERT_EQ(got.size(), want[0].size());
  EXPECT_EQ(0, std::memcmp(got.data(), want[0].data(), got.size() * sizeof(float)));
  std::vector<int32_t> greedy;
  for (size_t i = 0; i < 3; ++i)
    greedy.push_back(static_cast<int32_t>(std::max_element(want[i].begin(), want[i].end()) - want[i].begin()));
  EXPECT_EQ(j["generated_ids"].get<std::vector<int32_t>>(), greedy);

  {
    std::ofstream bad(dir + "/bad.txt");
    bad << "5 7 999";
  }
  const auto e = test::cli("generate -m synthetic:tiny-gqa --backend cpu --prompt-ids " + dir + "/bad.txt -n 1");
  EXPECT_NE(e.code, 0);
  EXPECT_NE(e.err.find("bad.txt: token 2: '999' is not a token id (expected 0..319)"), std::string::npos) << e.err;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace headinfer
