#include <gtest/gtest.h>

#include "format/gguf.hpp"
#include "format/gguf_vocab.hpp"
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

}  // namespace

TEST(Gguf, ReadsEveryValueType) {
  for (uint32_t version : {2u, 3u}) {
    GgufWriter w;
    w.version = version;
    put<uint8_t>(w.kv_raw("u8", GgufWriter::U8), 200);
    put<int8_t>(w.kv_raw("i8", GgufWriter::I8), -100);
    put<uint16_t>(w.kv_raw("u16", GgufWriter::U16), 60000);
    put<int16_t>(w.kv_raw("i16", GgufWriter::I16), -30000);
    w.kv_u32("u32", 4000000000u);
    w.kv_i32("i32", -2000000000);
    w.kv_u64("u64", uint64_t{1} << 40);
    put<int64_t>(w.kv_raw("i64", GgufWriter::I64), -(int64_t{1} << 40));
    w.kv_f32("f32", 0.5f);
    put<double>(w.kv_raw("f64", GgufWriter::F64), 0.125);
    w.kv_bool("bool", true);
    w.kv_str("str", "hello");
    w.kv_strs("strs", {"a", "", "ccc"});
    w.kv_f32s("f32s", {1.0f, 2.5f});
    w.kv_i32s("i32s", {-1, 7});
    // An array of two arrays of u8.
    Bytes& raw = w.kv_raw("nested", GgufWriter::Array);
    put<uint32_t>(raw, GgufWriter::Array);
    put<uint64_t>(raw, 2);
    for (int k = 0; k < 2; ++k) {
      put<uint32_t>(raw, GgufWriter::U8);
      put<uint64_t>(raw, 1);
      put<uint8_t>(raw, static_cast<uint8_t>(k + 10));
    }
    Bytes b = w.bytes();
    GgufFile f = GgufFile::parse(b, "mem.gguf");
    EXPECT_EQ(f.version(), version);
    EXPECT_EQ(f.get_int("u8"), 200);
    EXPECT_EQ(f.get_int("i8"), -100);
    EXPECT_EQ(f.get_int("u16"), 60000);
    EXPECT_EQ(f.get_int("i16"), -30000);
    EXPECT_EQ(f.get_int("u32"), 4000000000ll);
    EXPECT_EQ(f.get_int("i32"), -2000000000);
    EXPECT_EQ(f.get_int("u64"), int64_t{1} << 40);
    EXPECT_EQ(f.get_int("i64"), -(int64_t{1} << 40));
    EXPECT_EQ(f.get_float("f32"), 0.5);
    EXPECT_EQ(f.get_float("f64"), 0.125);
    EXPECT_EQ(f.get_float("u32"), 4e9);
    EXPECT_TRUE(f.get_bool("bool"));
    EXPECT_EQ(f.get_string("str"), "hello");
    EXPECT_EQ(f.get_array("strs", GgufType::String).strings, (std::vector<std::string>{"a", "", "ccc"}));
    EXPECT_EQ(f.get_array("f32s", GgufType::F32).floats, (std::vector<double>{1.0, 2.5}));
    EXPECT_EQ(f.get_array("i32s", GgufType::I32).ints, (std::vector<int64_t>{-1, 7}));
    const GgufValue& nested = f.get_array("nested", GgufType::Array);
    ASSERT_EQ(nested.arrays.size(), 2u);
    EXPECT_EQ(nested.arrays[1].ints, (std::vector<int64_t>{11}));
    EXPECT_FALSE(f.opt_int("absent").has_value());
    EXPECT_EQ(f.metadata().size(), 16u);
    EXPECT_NE(error_of([&] { f.get_int("str"); }).find("mem.gguf: str: expected an integer, got string"),
              std::string::npos);
    EXPECT_NE(error_of([&] { f.get_string("absent"); }).find("mem.gguf: absent: missing"), std::string::npos);
    EXPECT_NE(error_of([&] { f.get_array("strs", GgufType::F32); }).find("expected an array of f32"),
              std::string::npos);
  }
}

TEST(Gguf, TensorShapesAreOutermostFirstAndAligned) {
  GgufWriter w;
  w.alignment = 64;
  w.kv_u32("general.alignment", 64);
  w.tensor_f32("m", {3, 2}, iota_f32(6));  // 2 rows of 3
  w.tensor_f32("v", {5}, iota_f32(5, 10.0f));
  Bytes b = w.bytes();
  GgufFile f = GgufFile::parse(b, "mem.gguf");
  EXPECT_EQ(f.alignment(), 64u);
  Tensor m = f.tensor("m");
  EXPECT_EQ(m.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(static_cast<const float*>(m.data)[4], 4.0f);
  Tensor v = f.tensor("v");
  EXPECT_EQ((static_cast<const uint8_t*>(v.data) - b.data()) % 64, 0);
  EXPECT_EQ(static_cast<const float*>(v.data)[0], 10.0f);
}

TEST(Gguf, UnsupportedTensorTypeNamesTensorAndType) {
  GgufWriter w;
  w.tensor("blk.0.attn_q.weight", 2 /*Q4_0*/, {32, 1}, Bytes(18));
  Bytes b = w.bytes();
  GgufFile f = GgufFile::parse(b, "q4.gguf");  // parsing is fine: only use is refused
  EXPECT_EQ(f.tensor_infos()[0].nbytes, 18u);
  std::string err = error_of([&] { f.tensor("blk.0.attn_q.weight"); });
  EXPECT_NE(err.find("q4.gguf: tensor 'blk.0.attn_q.weight': type Q4_0 is not supported"), std::string::npos) << err;
}

TEST(Gguf, OpensStories260KF32) {
  HI_REQUIRE_ASSET("models/stories260K-gguf/stories260K-f32.gguf");
  GgufFile f = GgufFile::open(asset("models/stories260K-gguf/stories260K-f32.gguf"));
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_int("llama.block_count"), 5);
  EXPECT_EQ(f.get_int("llama.attention.head_count_kv"), 4);
  EXPECT_EQ(f.tensor_infos().size(), 47u);
  EXPECT_EQ(f.tensor("token_embd.weight").shape, (std::vector<int64_t>{512, 64}));
  EXPECT_EQ(f.tensor("blk.0.ffn_down.weight").shape, (std::vector<int64_t>{64, 172}));
}

TEST(GgufVocab, Stories260KSentencePiece) {
  HI_REQUIRE_ASSET("models/stories260K-gguf/stories260K-q8_0.gguf");
  std::string path = asset("models/stories260K-gguf/stories260K-q8_0.gguf");
  VocabSpec v = gguf_vocab(GgufFile::open(path), path);
  EXPECT_EQ(v.model, VocabSpec::Model::Spm);
  EXPECT_EQ(v.tokens.size(), 512u);
  EXPECT_EQ(v.scores.size(), 512u);
  EXPECT_EQ(v.types.size(), 512u);
  EXPECT_EQ(v.bos_id, 1);
  EXPECT_EQ(v.eos_id, 2);
  EXPECT_EQ(v.tokens[1], "<s>");
  EXPECT_EQ(v.types[1], VocabSpec::Control);
  EXPECT_TRUE(v.add_bos);
  EXPECT_TRUE(v.add_space_prefix);
}

TEST(GgufVocab, Llama2TinyRandomFullVocabulary) {
  HI_REQUIRE_ASSET("models/llama-2-tiny-random.gguf");
  std::string path = asset("models/llama-2-tiny-random.gguf");
  VocabSpec v = gguf_vocab(GgufFile::open(path), path);
  EXPECT_EQ(v.tokens.size(), 32000u);
  EXPECT_EQ(v.unk_id, 0);
  EXPECT_EQ(v.tokens[259], "\xe2\x96\x81\xe2\x96\x81");  // "▁▁", Llama 2's first merge
  EXPECT_EQ(v.types[3], VocabSpec::Byte);
}

TEST(GgufVocab, Gpt2ByteLevelBpe) {
  HI_REQUIRE_ASSET("tokenizer-tests/ggml-vocab-gpt-2.gguf");
  std::string path = asset("tokenizer-tests/ggml-vocab-gpt-2.gguf");
  VocabSpec v = gguf_vocab(GgufFile::open(path), path);
  EXPECT_EQ(v.model, VocabSpec::Model::Bpe);
  EXPECT_EQ(v.tokens.size(), 50257u);
  EXPECT_EQ(v.merges.size(), 50000u);
  EXPECT_EQ(v.pre, "gpt-2");
}

TEST(GgufVocab, EotAndFlagsAndTemplate) {
  GgufWriter w = tiny_gguf_model();
  w.kv_u32("tokenizer.ggml.eot_token_id", 5);
  w.kv_u32("tokenizer.ggml.padding_token_id", 0);
  w.kv_bool("tokenizer.ggml.add_bos_token", false);
  w.kv_bool("tokenizer.ggml.add_eos_token", true);
  w.kv_bool("tokenizer.ggml.add_space_prefix", false);
  w.kv_str("tokenizer.ggml.pre", "llama3");
  w.kv_str("tokenizer.chat_template", "{{ messages }}");
  Bytes b = w.bytes();
  VocabSpec v = gguf_vocab(GgufFile::parse(b, "t.gguf"), "t.gguf");
  EXPECT_EQ(v.eot_ids, (std::vector<int>{5}));
  EXPECT_EQ(v.pad_id, 0);
  EXPECT_FALSE(v.add_bos);
  EXPECT_TRUE(v.add_eos);
  EXPECT_FALSE(v.add_space_prefix);
  EXPECT_EQ(v.pre, "llama3");
  EXPECT_EQ(v.chat_template, "{{ messages }}");
}

TEST(GgufVocab, NoTokenizerNamesFile) {
  GgufWriter w;
  w.kv_str("general.architecture", "llama");
  Bytes b = w.bytes();
  std::string err = error_of([&] { gguf_vocab(GgufFile::parse(b, "x.gguf"), "/m/x.gguf"); });
  EXPECT_NE(err.find("/m/x.gguf: tokenizer.ggml.model: missing"), std::string::npos) << err;
}
