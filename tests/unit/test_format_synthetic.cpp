#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "format/model_loader.hpp"
#include "format/synthetic.hpp"
#include "headinfer/error.hpp"
#include "test_assets.hpp"
#include "test_format_writers.hpp"

using namespace headinfer;
using namespace headinfer::test;

namespace {

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.nbytes() == b.nbytes() && std::memcmp(a.data, b.data, a.nbytes()) == 0;
}

}  // namespace

TEST(SyntheticSpec, ParsesOptions) {
  SyntheticSpec s = parse_synthetic_spec("synthetic:llama-3-8b,layers=2,seed=7,dtype=f32");
  EXPECT_EQ(s.preset, "llama-3-8b");
  EXPECT_EQ(s.layers, 2);
  EXPECT_EQ(s.seed, 7u);
  EXPECT_EQ(s.dtype, DType::F32);
  s = parse_synthetic_spec("synthetic:tiny-gqa");
  EXPECT_EQ(s.layers, -1);
  EXPECT_EQ(s.dtype, DType::BF16);
  EXPECT_NE(error_of([] { parse_synthetic_spec("synthetic:gpt-5"); }).find("preset: unknown, expected one of llama-3-8b"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_synthetic_spec("synthetic:tiny-mha,layers=x"); }).find("layers: expected"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_synthetic_spec("synthetic:tiny-mha,dtype=f16"); }).find("dtype: expected bf16 or f32"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_synthetic_spec("synthetic:tiny-mha,color=red"); }).find("option 'color': unknown"),
            std::string::npos);
}

// The big presets' shapes are the real models' (checked against shared/configs in
// test_format_hf_config); only configs here, no 8B allocation.
TEST(SyntheticConfig, RealArchitectureShapes) {
  auto cfg = [](const char* p) { return synthetic_config(parse_synthetic_spec(std::string("synthetic:") + p)); };
  ModelConfig c = cfg("llama-3.1-8b");
  EXPECT_EQ(c.n_layers, 32);
  EXPECT_EQ(c.hidden, 4096);
  EXPECT_EQ(c.n_kv_heads, 8);
  EXPECT_EQ(c.ffn_hidden, 14336);
  EXPECT_EQ(c.vocab_size, 128256);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::Llama3);
  EXPECT_GE(c.max_position, 4194304);
  c = cfg("llama-3.2-1b");
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_TRUE(c.tie_embeddings);
  EXPECT_EQ(c.rope_scaling.factor, 32.0);
  c = cfg("llama-2-7b");
  EXPECT_EQ(c.n_kv_heads, 32);
  EXPECT_EQ(c.ffn_hidden, 11008);
  c = cfg("mistral-7b");
  EXPECT_EQ(c.arch, "mistral");
  EXPECT_EQ(c.vocab_size, 32768);
  EXPECT_EQ(c.rope_theta, 1e6);
  c = cfg("qwen2.5-7b");
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_EQ(c.hidden, 3584);
  EXPECT_EQ(c.n_kv_heads, 4);
  EXPECT_EQ(c.ffn_hidden, 18944);
  EXPECT_EQ(c.vocab_size, 152064);
  c = cfg("llama-3-8b");
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::None);
  EXPECT_EQ(c.rope_theta, 500000.0);
  for (const std::string& p : synthetic_presets()) {
    SCOPED_TRACE(p);
    ModelConfig pc = synthetic_config(parse_synthetic_spec("synthetic:" + p));
    EXPECT_NO_THROW(pc.validate(p));
    EXPECT_EQ(pc.bos_id, 1);
    EXPECT_EQ(pc.eos_ids, (std::vector<int>{2}));
  }
  EXPECT_EQ(cfg("tiny-mha").n_kv_heads, cfg("tiny-mha").n_heads);
  EXPECT_EQ(cfg("tiny-mqa").n_kv_heads, 1);
  EXPECT_EQ(cfg("tiny-gqa").q_per_kv(), 2);
}

TEST(SyntheticModel, TinyPresetsBuildWithValidShapes) {
  for (const char* p : {"tiny-mha", "tiny-gqa", "tiny-mqa"}) {
    SCOPED_TRACE(p);
    LoadedModel m = load_model(std::string("synthetic:") + p);
    EXPECT_EQ(m.format, "synthetic");
    EXPECT_EQ(m.weight_dtype, DType::BF16);
    EXPECT_EQ(m.weights.layers.size(), static_cast<size_t>(m.config.n_layers));
    EXPECT_EQ(m.weights.layers.back().wq.shape,
              (std::vector<int64_t>{m.config.n_heads * m.config.head_dim, m.config.hidden}));
    EXPECT_EQ(m.weights.tok_embd.dtype, DType::BF16);
  }
}

TEST(SyntheticModel, DeterministicPerSeedAndLayerOverride) {
  LoadedModel a = load_model("synthetic:tiny-gqa,seed=3");
  LoadedModel b = load_model("synthetic:tiny-gqa,seed=3");
  LoadedModel c = load_model("synthetic:tiny-gqa,seed=4");
  EXPECT_TRUE(same_bits(a.weights.layers[2].w_down, b.weights.layers[2].w_down));
  EXPECT_TRUE(same_bits(a.weights.tok_embd, b.weights.tok_embd));
  EXPECT_FALSE(same_bits(a.weights.layers[2].w_down, c.weights.layers[2].w_down));
  // Distinct tensors get distinct streams.
  EXPECT_FALSE(same_bits(a.weights.layers[0].w_gate, a.weights.layers[0].w_up));
  LoadedModel one = load_model("synthetic:tiny-gqa,seed=3,layers=1");
  EXPECT_EQ(one.weights.layers.size(), 1u);
  EXPECT_TRUE(same_bits(one.weights.layers[0].wq, a.weights.layers[0].wq));
  // Fixed bits across machines: the first BF16 values of tok_embd for seed 3.
  auto* raw = static_cast<const uint16_t*>(a.weights.tok_embd.data);
  uint64_t sum = 0;
  for (int i = 0; i < 64; ++i) sum = sum * 31 + raw[i];
  // Golden value: update only when the generator is changed on purpose (it is
  // recorded as the test property tok_embd_hash).
  RecordProperty("tok_embd_hash", std::to_string(sum));
  EXPECT_EQ(sum, 4364073324404594120ull);
}

TEST(SyntheticModel, ValuesAreScaledNormalish) {
  LoadedModel m = load_model("synthetic:tiny-gqa,dtype=f32");
  const Tensor& w = m.weights.layers[0].w_gate;  // fan-in 128
  auto* v = static_cast<const float*>(w.data);
  double sum = 0, sq = 0;
  for (int64_t i = 0; i < w.numel(); ++i) {
    sum += v[i];
    sq += double{v[i]} * v[i];
  }
  double mean = sum / w.numel(), sd = std::sqrt(sq / w.numel() - mean * mean);
  EXPECT_NEAR(mean, 0.0, 0.01);
  EXPECT_NEAR(sd, 1.0 / std::sqrt(128.0), 0.01);
  auto* n = static_cast<const float*>(m.weights.layers[0].attn_norm.data);
  for (int i = 0; i < m.config.hidden; ++i) EXPECT_NEAR(n[i], 1.0, 0.3);
}

TEST(SyntheticModel, BiggerPresetWithOneLayer) {
  // Llama-3.2-1B shapes with one layer: 270M values, exercises the threaded fill.
  LoadedModel m = load_model("synthetic:llama-3.2-1b,layers=1");
  EXPECT_EQ(m.weights.lm_head.data, m.weights.tok_embd.data);
  EXPECT_EQ(m.weights.parameter_count(),
            int64_t{128256} * 2048 + 2048 + 2 * 2048 + 2048 * 2048 * 2 + 512 * 2048 * 2 + 3 * 8192 * 2048);
  EXPECT_EQ(m.weights.total_bytes(), static_cast<size_t>(m.weights.parameter_count()) * 2);
}

TEST(SyntheticVocab, ByteLevel) {
  VocabSpec v = synthetic_byte_vocab(320);
  ASSERT_EQ(v.tokens.size(), 320u);
  EXPECT_EQ(v.tokens[0], "<unk>");
  EXPECT_EQ(v.tokens[1], "<s>");
  EXPECT_EQ(v.tokens[2], "</s>");
  EXPECT_EQ(v.tokens[3], "<0x00>");
  EXPECT_EQ(v.tokens[3 + 0x41], "<0x41>");
  EXPECT_EQ(v.types[3 + 255], VocabSpec::Byte);
  EXPECT_EQ(v.types[259], VocabSpec::Unused);
  EXPECT_EQ(v.bos_id, 1);
  EXPECT_EQ(v.eos_id, 2);
  EXPECT_NE(error_of([] { synthetic_byte_vocab(100); }).find("vocab_size: expected at least 259"), std::string::npos);
}

TEST(ModelLoader, DispatchesAndExplainsBadSpecs) {
  std::string err = error_of([] { load_model("/no/such/model"); });
  EXPECT_NE(err.find("/no/such/model: not a model directory, .gguf file or synthetic:<preset> (presets: llama-3-8b"),
            std::string::npos)
      << err;
  TempDir dir;
  write_text(dir.file("notes.txt"), "hello");
  err = error_of([&] { load_model(dir.file("notes.txt")); });
  EXPECT_NE(err.find("notes.txt: not a model directory"), std::string::npos) << err;
  // An empty directory is taken as an HF directory and says what is missing.
  err = error_of([&] { load_model(dir.path()); });
  EXPECT_NE(err.find(dir.path() + ": config.json: missing"), std::string::npos) << err;
}

TEST(ModelLoader, GgufByMagicWithoutExtension) {
  HI_REQUIRE_ASSET("models/llama-2-tiny-random.gguf");
  TempDir dir;
  write_file(dir.file("model.bin"), read_file(asset("models/llama-2-tiny-random.gguf")));
  LoadedModel m = load_model(dir.file("model.bin"));
  EXPECT_EQ(m.format, "gguf");
  EXPECT_TRUE(static_cast<bool>(m.load_tokenizer));
}

TEST(ModelLoader, HfDirectory) {
  HI_REQUIRE_ASSET("models/stories260K/config.json");
  LoadedModel m = load_model(asset("models/stories260K"));
  EXPECT_EQ(m.format, "hf");
  EXPECT_EQ(m.spec, asset("models/stories260K"));
  EXPECT_TRUE(static_cast<bool>(m.load_tokenizer));
}
