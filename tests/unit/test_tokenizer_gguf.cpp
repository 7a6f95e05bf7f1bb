// Tokenizers built from GGUF vocabularies (tokenizer.ggml.* as llama.cpp writes
// them) against llama.cpp's golden ids, and against the same vocabulary loaded from
// its original file.
#include <gtest/gtest.h>

#include "format/gguf.hpp"
#include "format/gguf_vocab.hpp"
#include "test_assets.hpp"
#include "test_tokenizer_cases.hpp"
#include "tokenizer/tokenizer.hpp"

namespace headinfer {
namespace {

using test::asset;

std::unique_ptr<Tokenizer> gguf_tokenizer(const std::string& rel) {
  const std::string path = asset(rel);
  GgufFile f = GgufFile::open(path);
  return make_tokenizer(gguf_vocab(f, path));
}

void expect_golden(const Tokenizer& tok, const std::string& cases_rel, bool lossless) {
  auto cases = test::read_vocab_cases(asset(cases_rel + ".inp"), asset(cases_rel + ".out"));
  ASSERT_GT(cases.size(), 40u);
  std::vector<int32_t> all;
  for (const auto& c : cases) {
    EXPECT_EQ(tok.encode(c.text, false), c.ids) << "input: '" << c.text << "'";
    if (lossless) EXPECT_EQ(tok.decode(c.ids), c.text);
    all.insert(all.end(), c.ids.begin(), c.ids.end());
  }
  StreamDecoder dec(tok);
  std::string streamed;
  for (int32_t id : all) streamed += dec.push(id);
  streamed += dec.flush();
  EXPECT_EQ(streamed, tok.decode(all));
}

TEST(GgufVocab, LlamaSpmGolden) {
  HI_REQUIRE_ASSET("tokenizer-tests/ggml-vocab-llama-spm.gguf");
  auto tok = gguf_tokenizer("tokenizer-tests/ggml-vocab-llama-spm.gguf");
  EXPECT_EQ(tok->vocab_size(), 32000);
  EXPECT_TRUE(tok->add_bos_by_default());
  expect_golden(*tok, "tokenizer-tests/ggml-vocab-llama-spm.gguf", true);
}

TEST(GgufVocab, Gpt2Golden) {
  HI_REQUIRE_ASSET("tokenizer-tests/ggml-vocab-gpt-2.gguf");
  auto tok = gguf_tokenizer("tokenizer-tests/ggml-vocab-gpt-2.gguf");
  EXPECT_EQ(tok->vocab_size(), 50257);
  expect_golden(*tok, "tokenizer-tests/ggml-vocab-gpt-2.gguf", true);
}

// The same vocabulary through GGUF and through its source file must agree id for id.
void expect_same_tokenizer(const Tokenizer& a, const Tokenizer& b) {
  const char* texts[] = {"Once upon a time, there was a little girl named Lily.",
                         "  two  spaces\n\nnewlines\tand tabs ", "ünïcödé 🦙 日本語", "<s>literal</s> specials"};
  for (const char* t : texts) {
    EXPECT_EQ(a.encode(t, true), b.encode(t, true)) << t;
    EXPECT_EQ(a.decode(a.encode(t, true)), b.decode(b.encode(t, true))) << t;
  }
}

TEST(GgufVocab, Llama2TinyRandomMatchesTokenizerModel) {
  HI_REQUIRE_ASSET("models/llama-2-tiny-random.gguf");
  HI_REQUIRE_ASSET("tokenizers/llama2-spm/tokenizer.model");
  auto from_gguf = gguf_tokenizer("models/llama-2-tiny-random.gguf");
  auto from_model = load_tokenizer_file(asset("tokenizers/llama2-spm/tokenizer.model"));
  ASSERT_EQ(from_gguf->vocab_size(), from_model->vocab_size());
  expect_same_tokenizer(*from_gguf, *from_model);
}

TEST(GgufVocab, Stories260KMatchesTokenizerModelWithoutWhitespaceCollapse) {
  HI_REQUIRE_ASSET("models/stories260K-gguf/stories260K-f32.gguf");
  HI_REQUIRE_ASSET("models/stories260K/tokenizer.model");
  auto from_gguf = gguf_tokenizer("models/stories260K-gguf/stories260K-f32.gguf");
  VocabSpec spec = load_vocab_file(asset("models/stories260K/tokenizer.model"));
  // GGUF does not carry remove_extra_whitespaces (llama.cpp never applies it).
  spec.remove_extra_whitespaces = false;
  auto from_model = make_tokenizer(spec);
  ASSERT_EQ(from_gguf->vocab_size(), 512);
  expect_same_tokenizer(*from_gguf, *from_model);
}

}  // namespace
}  // namespace headinfer
