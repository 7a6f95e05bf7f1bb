// Real checkpoint against HF transformers: stories260K greedy from BOS for 199
// tokens (EOS ignored) must give exactly the ids HF produced (fixture made by
// scripts/reference/stories_greedy.py), from the HF directory and from llama.cpp's
// GGUF conversions; f16 and q8_0 files, teacher-forced on that sequence, stay
// close to f32 at every step.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>

#include "backend/backend.hpp"
#include "format/model_loader.hpp"
#include "runtime/executor.hpp"
#include "runtime/generator.hpp"
#include "test_assets.hpp"

namespace headinfer {
namespace {

struct Reference {
  int bos = 1;
  std::vector<int32_t> ids;
};

Reference reference() {
  std::ifstream in(test::fixtures_dir() + "/stories260K_greedy.json");
  EXPECT_TRUE(in) << "missing fixture stories260K_greedy.json";
  nlohmann::json j = nlohmann::json::parse(in);
  Reference r;
  r.bos = j.at("bos").get<int>();
  r.ids = j.at("generated").get<std::vector<int32_t>>();
  return r;
}

std::vector<int32_t> greedy(const std::string& spec, int n, int chunk = 512) {
  LoadedModel m = load_model(spec);
  auto be = make_cpu_backend(2);
  auto tok = m.load_tokenizer();
  ExecutorOptions eo;
  eo.capacity = n + 1;
  eo.max_chunk = chunk;
  Executor exec(*be, m, eo);
  Generator gen(exec, *tok);
  GenerateRequest req;
  req.prompt = {tok->bos_id()};
  req.max_tokens = n;
  req.sampling.temperature = 0;
  req.ignore_eos = true;
  req.max_context = m.config.max_position;
  return gen.run(req).tokens;
}

TEST(Stories260K, HfDirectoryGreedyMatchesTransformers) {
  HI_REQUIRE_ASSET("models/stories260K/model.safetensors");
  const Reference ref = reference();
  ASSERT_EQ(ref.ids.size(), 199u);
  EXPECT_EQ(greedy(test::asset("models/stories260K"), 199), ref.ids);
}

TEST(Stories260K, GgufF32GreedyMatchesTransformers) {
  HI_REQUIRE_ASSET("models/stories260K-gguf/stories260K-f32.gguf");
  EXPECT_EQ(greedy(test::asset("models/stories260K-gguf/stories260K-f32.gguf"), 199), reference().ids);
}

TEST(Stories260K, DecodedTextIsTheStory) {
  HI_REQUIRE_ASSET("models/stories260K/tokenizer.model");
  LoadedModel m = load_model(test::asset("models/stories260K"));
  auto tok = m.load_tokenizer();
  const std::string text = tok->decode(reference().ids);
  EXPECT_EQ(text.rfind("Once upon a time, there was a little girl named Lily.", 0), 0u) << text;
}

// Logits of every step when the f32 greedy sequence is fed one token at a time.
std::vector<std::vector<float>> teacher_forced(const std::string& spec, const Reference& ref) {
  LoadedModel m = load_model(spec);
  auto be = make_cpu_backend(2);
  ExecutorOptions eo;
  eo.capacity = 200;
  eo.max_chunk = 1;
  Executor exec(*be, m, eo);
  std::vector<int32_t> seq = {ref.bos};
  seq.insert(seq.end(), ref.ids.begin(), ref.ids.end());
  std::vector<std::vector<float>> out;
  for (size_t i = 0; i + 1 < seq.size(); ++i) out.push_back(exec.forward(&seq[i], 1));
  return out;
}

double rel_err(const std::vector<float>& a, const std::vector<float>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num = std::max(num, std::abs(static_cast<double>(a[i]) - ref[i]));
    den = std::max(den, std::abs(static_cast<double>(ref[i])));
  }
  return num / den;
}

TEST(Stories260K, F16AndQ8_0StayCloseToF32AtEveryStep) {
  HI_REQUIRE_ASSET("models/stories260K-gguf/stories260K-q8_0.gguf");
  const Reference ref = reference();
  const auto f32 = teacher_forced(test::asset("models/stories260K-gguf/stories260K-f32.gguf"), ref);
  const auto f16 = teacher_forced(test::asset("models/stories260K-gguf/stories260K-f16.gguf"), ref);
  const auto q8 = teacher_forced(test::asset("models/stories260K-gguf/stories260K-q8_0.gguf"), ref);
  double worst16 = 0, worst8 = 0;
  for (size_t i = 0; i < f32.size(); ++i) {
    worst16 = std::max(worst16, rel_err(f16[i], f32[i]));
    worst8 = std::max(worst8, rel_err(q8[i], f32[i]));
  }
  RecordProperty("worst_rel_f16", std::to_string(worst16));
  RecordProperty("worst_rel_q8_0", std::to_string(worst8));
  EXPECT_LT(worst16, 1e-2);
  EXPECT_LT(worst8, 5e-2);
  std::printf("worst relative logit error over %zu steps: f16 %.2e, q8_0 %.2e\n", f32.size(), worst16, worst8);
}

TEST(LlamaTinyRandomGguf, LoadsTokenizesAndGenerates) {
  HI_REQUIRE_ASSET("models/llama-2-tiny-random.gguf");
  LoadedModel m = load_model(test::asset("models/llama-2-tiny-random.gguf"));
  auto tok = m.load_tokenizer();
  const auto ids = tok->encode("Hello world", true);
  ASSERT_GE(ids.size(), 2u);
  EXPECT_EQ(ids[0], tok->bos_id());
  auto be = make_cpu_backend(1);
  ExecutorOptions eo;
  eo.capacity = 64;
  Executor exec(*be, m, eo);
  Generator gen(exec, *tok);
  GenerateRequest req;
  req.prompt = ids;
  req.max_tokens = 8;
  req.sampling.temperature = 0;
  req.ignore_eos = true;
  req.max_context = 64;
  EXPECT_EQ(gen.run(req).tokens.size(), 8u);
}

}  // namespace
}  // namespace headinfer
