// Tokenizer behaviour beyond the golden files: SentencePiece models we only have
// reference ids for (made with the sentencepiece Python package), special tokens,
// streaming, malformed files and speed.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "headinfer/error.hpp"
#include "test_assets.hpp"
#include "tokenizer/byte_unicode.hpp"
#include "tokenizer/tokenizer.hpp"
#include "tokenizer/utf8.hpp"

namespace headinfer {
namespace {

using test::asset;
using Ids = std::vector<int32_t>;

constexpr const char* kStories = "models/stories260K/tokenizer.model";
constexpr const char* kMistralV3 = "tokenizers/mistral-spm/mistral_instruct_tokenizer_240323.model.v3";
constexpr const char* kLlama2 = "tokenizers/llama2-spm/tokenizer.model";
constexpr const char* kLlama3 = "tokenizers/llama3-tiktoken/tokenizer.model";
constexpr const char* kGpt2 = "tokenizers/gpt2/vocab.json";

// Reference ids: sentencepiece.SentencePieceProcessor(model_file=...).encode(text).
TEST(SpmModel, Stories260KMatchesSentencePiece) {
  HI_REQUIRE_ASSET(kStories);
  auto tok = load_tokenizer_file(asset(kStories));
  EXPECT_EQ(tok->vocab_size(), 512);
  EXPECT_EQ(tok->encode("Once upon a time, there was a little girl.", false),
            (Ids{403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 426}));
  // This model sets remove_extra_whitespaces: runs of spaces collapse, ends are stripped.
  EXPECT_EQ(tok->encode("  leading and   inner  spaces  ", false),
            (Ids{278, 411, 380, 299, 269, 322, 416, 285, 262, 427, 412, 331, 419}));
  Ids mixed = {317, 336, 467, 313, 448, 327, 443, 436, 410, 475, 479, 472, 410, 198, 191,
               416, 198, 178, 429, 198, 185, 418, 485, 410, 243, 162, 169, 156};
  EXPECT_EQ(tok->encode("Lily said: \"Wow!\" 123 ünïcödé 🦙", false), mixed);
  EXPECT_EQ(tok->decode(mixed), "Lily said: \"Wow!\" 123 ünïcödé 🦙");
  EXPECT_EQ(tok->encode("hello\nworld\t!", true), (Ids{1, 281, 306, 414, 13, 424, 304, 341, 12, 443}));
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_TRUE(tok->is_eog(2));
}

TEST(SpmModel, MistralV3MatchesSentencePiece) {
  HI_REQUIRE_ASSET(kMistralV3);
  auto tok = load_tokenizer_file(asset(kMistralV3));
  EXPECT_EQ(tok->vocab_size(), 32768);
  EXPECT_EQ(tok->encode("  leading and   inner  spaces  ", false), (Ids{1027, 6142, 1072, 1027, 8218, 29473, 11367, 1027}));
  Ids mixed = {26260, 1541, 29515, 1113, 29548, 1104, 3549, 29473, 29508, 29518, 29538,
               5443, 29479, 29688, 29485, 15465, 29565, 29473, 1011, 930, 937, 924};
  EXPECT_EQ(tok->encode("Lily said: \"Wow!\" 123 ünïcödé 🦙", false), mixed);
  EXPECT_EQ(tok->encode("hello\nworld\t!", false), (Ids{7080, 29477, 781, 10239, 780, 29576}));
  EXPECT_EQ(tok->decode(tok->encode("  leading and   inner  spaces  ", true)), "  leading and   inner  spaces  ");
  // Control tokens are parsed only on request; otherwise they are plain text.
  EXPECT_EQ(tok->special_id("[INST]"), 3);
  EXPECT_EQ(tok->encode("[INST]", false, true), (Ids{3}));
  Ids literal = tok->encode("[INST]", false, false);
  EXPECT_GT(literal.size(), 1u);
  EXPECT_EQ(tok->decode(literal), "[INST]");
  EXPECT_EQ(tok->decode({1, 3, 2592, 4}), "What");
  EXPECT_EQ(tok->decode({1, 3, 2592, 4}, false), "<s>[INST] What[/INST]");
}

TEST(SpmModel, TextAfterSpecialGetsItsOwnSpacePrefix) {
  HI_REQUIRE_ASSET(kLlama2);
  auto tok = load_tokenizer_file(asset(kLlama2));
  Ids hello = tok->encode("Hello", false);           // ▁Hello
  Ids joined = tok->encode("Hello</s>Hello", false);  // ▁Hello </s> ▁Hello (llama.cpp rule)
  Ids want = hello;
  want.push_back(2);
  want.insert(want.end(), hello.begin(), hello.end());
  EXPECT_EQ(joined, want);
  EXPECT_EQ(tok->encode("", true), (Ids{1}));
  EXPECT_TRUE(tok->encode("", false).empty());
}

TEST(SpmModel, HfTokenizerJsonDirectoryUsesConfig) {
  HI_REQUIRE_ASSET("tokenizers/llama2-hf/tokenizer_config.json");
  auto tok = load_tokenizer_dir(asset("tokenizers/llama2-hf"));
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  EXPECT_TRUE(tok->add_bos_by_default());
  EXPECT_TRUE(tok->strips_leading_space());
  auto spm = load_tokenizer_file(asset(kLlama2));
  const std::string text = "The quick brown fox\njumps over 13 lazy dogs. Ünïcode ✓";
  EXPECT_EQ(tok->encode(text, true), spm->encode(text, true));
}

TEST(BpeModel, Llama3SpecialTokens) {
  HI_REQUIRE_ASSET(kLlama3);
  auto tok = load_tokenizer_file(asset(kLlama3));
  EXPECT_EQ(tok->vocab_size(), 128256);
  EXPECT_EQ(tok->bos_id(), 128000);
  EXPECT_EQ(tok->eos_id(), 128001);
  EXPECT_TRUE(tok->add_bos_by_default());
  EXPECT_EQ(tok->special_id("<|start_header_id|>"), 128006);
  EXPECT_EQ(tok->special_id("<|end_header_id|>"), 128007);
  EXPECT_EQ(tok->special_id("<|eot_id|>"), 128009);
  EXPECT_EQ(tok->special_id("<|reserved_special_token_247|>"), 128255);
  EXPECT_TRUE(tok->is_eog(128001));
  EXPECT_TRUE(tok->is_eog(128009));
  EXPECT_FALSE(tok->is_eog(128006));
  EXPECT_TRUE(tok->is_control(128009));
  EXPECT_EQ(tok->encode("Hi<|eot_id|>", true), (Ids{128000, 13347, 128009}));
  Ids literal = tok->encode("<|eot_id|>", false, false);
  EXPECT_GT(literal.size(), 1u);
  EXPECT_EQ(tok->decode(literal), "<|eot_id|>");
  EXPECT_EQ(tok->decode({128000, 13347, 128009}), "Hi");
  EXPECT_EQ(tok->decode({128000, 13347, 128009}, false), "<|begin_of_text|>Hi<|eot_id|>");
}

TEST(BpeModel, Gpt2HasNoBosAndEndOfText) {
  HI_REQUIRE_ASSET(kGpt2);
  auto tok = load_tokenizer_file(asset(kGpt2));
  EXPECT_FALSE(tok->add_bos_by_default());
  EXPECT_EQ(tok->eos_id(), 50256);
  EXPECT_EQ(tok->encode("Hello world<|endoftext|>", false), (Ids{15496, 995, 50256}));
}

TEST(BpeModel, InvalidUtf8SurvivesRoundTrip) {
  HI_REQUIRE_ASSET(kLlama3);
  auto tok = load_tokenizer_file(asset(kLlama3));
  const std::string bad = std::string("ok \xff\xfe x\xe2\x82 end \xc3", 13);
  Ids ids = tok->encode(bad, false);
  EXPECT_EQ(tok->decode(ids), bad);
}

TEST(Stream, HoldsPartialCharactersAndStripsDummySpace) {
  HI_REQUIRE_ASSET(kLlama2);
  auto tok = load_tokenizer_file(asset(kLlama2));
  Ids ids = tok->encode(" this is 🦙", true);  // ... ▁ <0xF0> <0x9F> <0xA6> <0x99>
  StreamDecoder dec(*tok);
  std::vector<std::string> pieces;
  for (int32_t id : ids) pieces.push_back(dec.push(id));
  EXPECT_EQ(dec.flush(), "");
  ASSERT_GE(pieces.size(), 4u);
  EXPECT_EQ(pieces[pieces.size() - 4], "");
  EXPECT_EQ(pieces[pieces.size() - 2], "");
  EXPECT_EQ(pieces.back(), "🦙");
  std::string joined;
  for (auto& p : pieces) joined += p;
  EXPECT_EQ(joined, " this is 🦙");
  EXPECT_EQ(joined, tok->decode(ids));
}

TEST(Stream, FlushReturnsUnfinishedBytes) {
  HI_REQUIRE_ASSET(kLlama2);
  auto tok = load_tokenizer_file(asset(kLlama2));
  StreamDecoder dec(*tok);
  int32_t f0 = tok->token_id("<0xF0>");
  ASSERT_GE(f0, 0);
  EXPECT_EQ(dec.push(f0), "");
  EXPECT_EQ(dec.flush(), "\xF0");
}

TEST(Utf8, CompletePrefix) {
  EXPECT_EQ(utf8::complete_prefix("abc"), 3u);
  EXPECT_EQ(utf8::complete_prefix("ab\xE2\x82"), 2u);
  EXPECT_EQ(utf8::complete_prefix("ab\xE2\x82\xAC"), 5u);
  EXPECT_EQ(utf8::complete_prefix("\xF0\x9F\xA6"), 0u);
  EXPECT_EQ(utf8::complete_prefix("a\x80"), 2u);  // stray continuation: nothing to wait for
}

TEST(ByteLevel, AlphabetRoundTrips) {
  EXPECT_EQ(to_byte_level(" "), "Ġ");
  EXPECT_EQ(to_byte_level("\n"), "Ċ");
  std::string all;
  for (int b = 0; b < 256; ++b) all += static_cast<char>(b);
  EXPECT_EQ(from_byte_level(to_byte_level(all)), all);
}

TEST(MakeTokenizer, SpmFromPlainSpec) {
  VocabSpec spec;
  spec.model = VocabSpec::Model::Spm;
  spec.tokens = {"<unk>", "<s>", "</s>", "\xE2\x96\x81", "a", "b", "ab", "\xE2\x96\x81" "ab", "<0x63>"};
  spec.scores = {0, 0, 0, -1, -2, -3, -1, -0.5f, 0};
  spec.types = {2, 3, 3, 1, 1, 1, 1, 1, 6};
  spec.bos_id = 1;
  spec.eos_id = 2;
  spec.unk_id = 0;
  auto tok = make_tokenizer(spec);
  EXPECT_EQ(tok->encode("ab", true), (Ids{1, 7}));
  EXPECT_EQ(tok->encode("abc", false), (Ids{7, 8}));   // 'c' only as a byte token
  EXPECT_EQ(tok->encode("ad", false), (Ids{3, 4, 0}));  // 'd' has no byte token: <unk>
  EXPECT_EQ(tok->decode({1, 7, 8}), "abc");
}

TEST(MakeTokenizer, BpeFromPlainSpecWithMerges) {
  VocabSpec spec;
  spec.model = VocabSpec::Model::Bpe;
  spec.pre = "gpt2";
  spec.tokens = {"a", "b", "c", "Ġ", "ab", "abc", "Ġa"};
  spec.merges = {"a b", "ab c", "Ġ a"};
  spec.add_bos = false;
  auto tok = make_tokenizer(spec);
  // " abc" -> Ġ a b c: "a b" (rank 0) wins over "Ġ a" (rank 2), then "ab c".
  EXPECT_EQ(tok->encode("abc abc", false), (Ids{5, 3, 5}));
  EXPECT_EQ(tok->encode("a a", false), (Ids{0, 6}));
  EXPECT_EQ(tok->decode({5, 3, 5}), "abc abc");
}

class BadFile : public ::testing::Test {
 protected:
  std::string write(const std::string& name, const std::string& bytes) {
    auto dir = std::filesystem::temp_directory_path() / ("hi_tok_test_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    auto p = (dir / name).string();
    std::ofstream(p, std::ios::binary) << bytes;
    return p;
  }
  static std::string message_of(const std::function<void()>& f) {
    try {
      f();
    } catch (const Error& e) {
      return e.what();
    }
    return "(no error)";
  }
};

TEST_F(BadFile, ErrorsNameTheFileAndField) {
  auto trunc = write("tokenizer.model", std::string("\x0a\x10\x0a\x03<s>", 7));
  EXPECT_NE(message_of([&] { load_tokenizer_file(trunc); }).find(trunc + ": ModelProto: truncated"), std::string::npos)
      << message_of([&] { load_tokenizer_file(trunc); });
  auto junk = write("junk.model", "hello there\n");
  EXPECT_NE(message_of([&] { load_tokenizer_file(junk); }).find(junk + ": format:"), std::string::npos);
  auto uni = write("tokenizer.json", R"({"model": {"type": "Unigram", "vocab": []}})");
  EXPECT_NE(message_of([&] { load_tokenizer_file(uni); }).find("model.type: 'Unigram' is not supported"), std::string::npos);
  auto tik = write("tik.model", "IQ== 0\nIg== x\n");
  EXPECT_NE(message_of([&] { load_tokenizer_file(tik); }).find(tik + ": line 2: bad rank"), std::string::npos);
}

// A megabyte of mixed prose, code-ish text and non-Latin script.
std::string megabyte_of_text() {
  const std::string chunk =
      "The quick brown fox jumps over the lazy dog. It's 3.14159 o'clock; naïve café — déjà vu!\n"
      "    for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }\n"
      "Привет, мир! 你好，世界。 こんにちは 🦙🦙 \t\t mixed\r\n";
  std::string text;
  while (text.size() < (1u << 20)) text += chunk;
  return text;
}

double seconds_to_encode(const Tokenizer& tok, const std::string& text, size_t* n) {
  auto t0 = std::chrono::steady_clock::now();
  *n = tok.encode(text, false).size();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Large inputs work and round-trip; the times are printed for information only
// (speed is a benchmark's business, not a test's: sanitizers and shared CI machines
// would make a time limit flaky).
TEST(LargeInput, OneMegabyteAndOneHugeWordRoundTrip) {
  const std::string text = megabyte_of_text();
  const std::string one_word(200000, 'a');  // a single huge pre-token: merges must not be quadratic
  for (const char* file : {kLlama2, kLlama3, kGpt2}) {
    if (!std::filesystem::exists(asset(file))) continue;
    auto tok = load_tokenizer_file(asset(file));
    size_t n = 0;
    double s = seconds_to_encode(*tok, text, &n);
    std::printf("  %s: 1 MiB -> %zu tokens in %.3f s\n", file, n, s);
    EXPECT_EQ(tok->decode(tok->encode(text, false)), text) << file;
    s = seconds_to_encode(*tok, one_word, &n);
    std::printf("  %s: 200k-char word -> %zu tokens in %.3f s\n", file, n, s);
    EXPECT_GT(n, 0u) << file;
  }
}

}  // namespace
}  // namespace headinfer
