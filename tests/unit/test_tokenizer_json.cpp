// The byte-level tokenizer.json path (Llama 3 / Qwen2 shape) and tokenizer_config.json
// handling. No byte-level tokenizer.json ships in the shared assets, so the test
// writes one the way HF's Llama 3 file is laid out, from the same vocabulary's
// encoder.json + vocab.bpe, and holds it to the Llama 3 golden ids.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "headinfer/error.hpp"
#include "test_assets.hpp"
#include "test_tokenizer_cases.hpp"
#include "tokenizer/tokenizer.hpp"

namespace headinfer {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using test::asset;
using Ids = std::vector<int32_t>;

fs::path scratch_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("hi_tokjson_" + std::to_string(::getpid())) / name;
  fs::create_directories(d);
  return d;
}

void write_text(const fs::path& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }

// HF layout of Meta-Llama-3's tokenizer.json; merges as [left, right] pairs (the
// newer tokenizers format) to cover that spelling too.
json llama3_tokenizer_json() {
  json vocab = json::parse(test::slurp(asset("tokenizers/llama3.2-ollama-bpe/encoder.json")));
  json merges = json::array();
  std::istringstream lines(test::slurp(asset("tokenizers/llama3.2-ollama-bpe/vocab.bpe")));
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line.rfind("#version", 0) == 0) continue;
    size_t sp = line.find(' ', 1);
    merges.push_back({line.substr(0, sp), line.substr(sp + 1)});
  }
  json added = json::array();
  const char* names[] = {"<|begin_of_text|>", "<|end_of_text|>"};
  for (int i = 0; i < 2; ++i) added.push_back({{"id", 128000 + i}, {"content", names[i]}, {"special", true}});
  added.push_back({{"id", 128009}, {"content", "<|eot_id|>"}, {"special", true}});
  const char* regex =
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  return {
      {"version", "1.0"},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"}, {"pattern", {{"Regex", regex}}}, {"behavior", "Isolated"}, {"invert", false}},
          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}}}}},
      {"post_processor",
       {{"type", "Sequence"},
        {"processors",
         {{{"type", "ByteLevel"}},
          {{"type", "TemplateProcessing"},
           {"single", {{{"SpecialToken", {{"id", "<|begin_of_text|>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}}}}}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"ignore_merges", true}, {"byte_fallback", false}, {"vocab", vocab}, {"merges", merges}}}};
}

TEST(TokenizerJson, ByteLevelLlama3LayoutMatchesGolden) {
  HI_REQUIRE_ASSET("tokenizers/llama3.2-ollama-bpe/encoder.json");
  fs::path dir = scratch_dir("llama3");
  write_text(dir / "tokenizer.json", llama3_tokenizer_json().dump());
  write_text(dir / "tokenizer_config.json", R"({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
      "chat_template": "{{ '<|start_header_id|>' }}"})");
  write_text(dir / "config.json", R"({"eos_token_id": [128001, 128009]})");
  auto tok = load_tokenizer_dir(dir.string());
  EXPECT_EQ(tok->spec().pre, "llama3");
  EXPECT_EQ(tok->bos_id(), 128000);
  EXPECT_EQ(tok->eos_id(), 128009);
  EXPECT_TRUE(tok->is_eog(128001));
  EXPECT_TRUE(tok->add_bos_by_default());
  EXPECT_EQ(tok->spec().chat_template, "{{ '<|start_header_id|>' }}");
  EXPECT_EQ(tok->encode("Hi<|eot_id|>", true), (Ids{128000, 13347, 128009}));
  auto cases = test::read_vocab_cases(asset("tokenizer-tests/ggml-vocab-llama-bpe.gguf.inp"),
                                      asset("tokenizer-tests/ggml-vocab-llama-bpe.gguf.out"));
  ASSERT_GT(cases.size(), 40u);
  for (const auto& c : cases) {
    EXPECT_EQ(tok->encode(c.text, false), c.ids) << c.text;
    EXPECT_EQ(tok->decode(c.ids), c.text);
  }
  fs::remove_all(dir);
}

TEST(TokenizerConfig, OverridesBosRules) {
  HI_REQUIRE_ASSET("tokenizers/gpt2/vocab.json");
  fs::path dir = scratch_dir("gpt2");
  fs::copy_file(asset("tokenizers/gpt2/vocab.json"), dir / "vocab.json", fs::copy_options::overwrite_existing);
  fs::copy_file(asset("tokenizers/gpt2/merges.txt"), dir / "merges.txt", fs::copy_options::overwrite_existing);
  write_text(dir / "tokenizer_config.json",
             R"({"add_bos_token": true, "bos_token": {"content": "<|endoftext|>"},
                 "added_tokens_decoder": {"50256": {"content": "<|endoftext|>", "special": true}}})");
  auto tok = load_tokenizer_dir(dir.string());
  EXPECT_TRUE(tok->add_bos_by_default());
  EXPECT_EQ(tok->encode("Hello", true), (Ids{50256, 15496}));
  write_text(dir / "tokenizer_config.json", R"({"bos_token": "<nope>"})");
  EXPECT_THROW(load_tokenizer_dir(dir.string()), Error);
  fs::remove_all(dir);
}

TEST(PreTokenizer, Qwen2SplitsDigitsOneByOne) {
  VocabSpec spec;
  spec.model = VocabSpec::Model::Bpe;
  spec.pre = "qwen2";
  spec.tokens = {"1", "2", "3", "12", "123", "Ġ"};
  spec.merges = {"1 2", "12 3"};
  auto qwen = make_tokenizer(spec);
  EXPECT_EQ(qwen->encode("123", false), (Ids{0, 1, 2}));
  spec.pre = "llama3";
  EXPECT_EQ(make_tokenizer(spec)->encode("123", false), (Ids{4}));
  spec.pre = "no-such-pre";  // unknown names fall back to GPT-2's rules: digits stay together
  EXPECT_EQ(make_tokenizer(spec)->encode("123", false), (Ids{4}));
  spec.pre_regexes = {"\\p{N}"};  // explicit regexes win over the name
  EXPECT_EQ(make_tokenizer(spec)->encode("123", false), (Ids{0, 1, 2}));
}

}  // namespace
}  // namespace headinfer
