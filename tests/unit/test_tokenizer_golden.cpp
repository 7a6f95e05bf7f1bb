// Our tokenizers against llama.cpp's golden tokenizations (tests/*.inp/.out), through
// every file format that carries the same vocabulary, plus decode round trips and
// the stream decoder on the same sequences.
#include <gtest/gtest.h>

#include <memory>

#include "test_assets.hpp"
#include "test_tokenizer_cases.hpp"
#include "tokenizer/tokenizer.hpp"

namespace headinfer {
namespace {

using test::asset;

std::string hex_dump(const std::string& s) {
  std::string out;
  char buf[4];
  for (unsigned char c : s) {
    std::snprintf(buf, sizeof buf, "%02x ", c);
    out += buf;
  }
  return out;
}

std::string stream_decode(const Tokenizer& tok, const std::vector<int32_t>& ids) {
  StreamDecoder dec(tok);
  std::string out;
  for (int32_t id : ids) {
    std::string piece = dec.push(id);
    out += piece;
  }
  return out + dec.flush();
}

struct GoldenParam {
  const char* name;
  const char* tokenizer;  // asset path of the tokenizer file
  const char* cases;      // asset path of the .inp/.out pair without extension
  bool lossless;          // decode(encode(x)) == x expected for every input
};

class GoldenTokenizer : public ::testing::TestWithParam<GoldenParam> {};

TEST_P(GoldenTokenizer, MatchesLlamaCppIds) {
  const GoldenParam& p = GetParam();
  HI_REQUIRE_ASSET(p.tokenizer);
  HI_REQUIRE_ASSET(std::string(p.cases) + ".inp");
  auto tok = load_tokenizer_file(asset(p.tokenizer));
  auto cases = test::read_vocab_cases(asset(std::string(p.cases) + ".inp"), asset(std::string(p.cases) + ".out"));
  ASSERT_GT(cases.size(), 40u);
  int failures = 0;
  for (const auto& c : cases) {
    std::vector<int32_t> got = tok->encode(c.text, /*add_bos=*/false);
    EXPECT_EQ(got, c.ids) << "input: '" << c.text << "' (" << hex_dump(c.text) << ")";
    failures += got != c.ids;
  }
  EXPECT_EQ(failures, 0) << " of " << cases.size();
}

TEST_P(GoldenTokenizer, DecodeRoundTripsAndStreamAgrees) {
  const GoldenParam& p = GetParam();
  HI_REQUIRE_ASSET(p.tokenizer);
  HI_REQUIRE_ASSET(std::string(p.cases) + ".inp");
  auto tok = load_tokenizer_file(asset(p.tokenizer));
  auto cases = test::read_vocab_cases(asset(std::string(p.cases) + ".inp"), asset(std::string(p.cases) + ".out"));
  std::vector<int32_t> all;
  for (const auto& c : cases) {
    std::string text = tok->decode(c.ids);
    if (p.lossless) EXPECT_EQ(text, c.text) << "ids of '" << c.text << "'";
    EXPECT_EQ(stream_decode(*tok, c.ids), text);
    all.insert(all.end(), c.ids.begin(), c.ids.end());
  }
  EXPECT_EQ(stream_decode(*tok, all), tok->decode(all));
}

INSTANTIATE_TEST_SUITE_P(
    Files, GoldenTokenizer,
    ::testing::Values(
        GoldenParam{"llama2_spm_model", "tokenizers/llama2-spm/tokenizer.model", "tokenizer-tests/ggml-vocab-llama-spm.gguf", true},
        GoldenParam{"llama2_hf_json", "tokenizers/llama2-hf/tokenizer.json", "tokenizer-tests/ggml-vocab-llama-spm.gguf", true},
        GoldenParam{"llama3_tiktoken", "tokenizers/llama3-tiktoken/tokenizer.model", "tokenizer-tests/ggml-vocab-llama-bpe.gguf", true},
        GoldenParam{"llama3_encoder_json", "tokenizers/llama3.2-ollama-bpe/encoder.json", "tokenizer-tests/ggml-vocab-llama-bpe.gguf", true},
        GoldenParam{"gpt2_vocab_json", "tokenizers/gpt2/vocab.json", "tokenizer-tests/ggml-vocab-gpt-2.gguf", true}),
    [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace headinfer
