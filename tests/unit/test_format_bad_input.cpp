// Corrupt and incomplete model files, generated at test time: every one must give
// an Error whose one-line message names the file and the field, never a crash.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>

#include "format/gguf.hpp"
#include "format/gguf_model.hpp"
#include "format/hf_model.hpp"
#include "format/model_loader.hpp"
#include "format/safetensors.hpp"
#include "headinfer/error.hpp"
#include "test_format_writers.hpp"

using namespace headinfer;
using namespace headinfer::test;

namespace {

// Runs fn, which must throw Error; returns the message.
std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "multi-line error: " << msg;
    return msg;
  }
  ADD_FAILURE() << "no error thrown";
  return "";
}

#define EXPECT_ERROR(fn, ...)                                             \
  do {                                                                    \
    std::string msg_ = error_of(fn);                                      \
    for (const std::string& part_ : std::vector<std::string>{__VA_ARGS__}) \
      EXPECT_NE(msg_.find(part_), std::string::npos) << "'" << part_ << "' not in: " << msg_; \
  } while (0)

class BadInput : public ::testing::Test {
 protected:
  std::string write(const std::string& name, const Bytes& b) {
    write_file(dir_.file(name), b);
    return dir_.file(name);
  }
  std::string safetensors(const Bytes& b) { return write("bad.safetensors", b); }
  std::string safetensors_header(const std::string& header, size_t data_bytes) {
    return safetensors(SafetensorsWriter::assemble(header, Bytes(data_bytes)));
  }
  TempDir dir_;
};

std::function<void()> open_st(const std::string& path) {
  return [path] { SafetensorsFile::open(path); };
}
std::function<void()> open_gguf(const std::string& path) {
  return [path] { GgufFile::open(path); };
}
std::function<void()> load_gguf(const std::string& path) {
  return [path] { load_gguf_model(path); };
}

}  // namespace

TEST_F(BadInput, SafetensorsTruncatedHeaderLength) {
  auto p = safetensors(Bytes{1, 2, 3});
  EXPECT_ERROR(open_st(p), p + ": header length: truncated");
}

TEST_F(BadInput, SafetensorsEmptyFile) {
  auto p = safetensors(Bytes{});
  EXPECT_ERROR(open_st(p), p + ": header length: truncated");
}

TEST_F(BadInput, SafetensorsHeaderLengthPastEof) {
  Bytes b;
  put<uint64_t>(b, 1000);
  put_bytes(b, "{}", 2);
  auto p = safetensors(b);
  EXPECT_ERROR(open_st(p), p + ": header length: 1000 bytes is past the end of the file");
  Bytes huge;
  put<uint64_t>(huge, ~uint64_t{0});
  p = safetensors(huge);
  EXPECT_ERROR(open_st(p), p + ": header length:");
}

TEST_F(BadInput, SafetensorsHeaderNotJsonObject) {
  EXPECT_ERROR(open_st(safetensors_header("[1, 2]", 0)), "bad.safetensors: header: expected a JSON object, got array");
  EXPECT_ERROR(open_st(safetensors_header("{\"a\": ", 0)), "bad.safetensors: header: not valid JSON");
  EXPECT_ERROR(open_st(safetensors_header("{\"a\": 5}", 0)), "bad.safetensors: tensor 'a': expected an object");
}

TEST_F(BadInput, SafetensorsOffsetPastEof) {
  auto p = safetensors_header(R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})", 8);
  EXPECT_ERROR(open_st(p), p + ": tensor 'w': data_offsets: end 16 is past the end of the data section (8 bytes)");
}

TEST_F(BadInput, SafetensorsOffsetsDisagreeWithShape) {
  auto p = safetensors_header(R"({"w": {"dtype": "BF16", "shape": [2, 3], "data_offsets": [0, 8]}})", 16);
  EXPECT_ERROR(open_st(p), p + ": tensor 'w': data_offsets: expected 12 bytes for BF16 [2, 3], got 8");
}

TEST_F(BadInput, SafetensorsNegativeAndReversedOffsets) {
  EXPECT_ERROR(open_st(safetensors_header(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}})", 8)),
               "tensor 'w': data_offsets: negative value -4");
  EXPECT_ERROR(open_st(safetensors_header(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}})", 8)),
               "tensor 'w': data_offsets: begin 8 > end 4");
  EXPECT_ERROR(open_st(safetensors_header(R"({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})", 8)),
               "tensor 'w': shape: negative value -1");
  EXPECT_ERROR(open_st(safetensors_header(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0]}})", 8)),
               "tensor 'w': data_offsets: expected [begin, end]");
}

TEST_F(BadInput, SafetensorsOverlappingTensors) {
  auto p = safetensors_header(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                  "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                              12);
  EXPECT_ERROR(open_st(p), p + ": tensor 'b': data_offsets: overlaps tensor 'a'");
}

TEST_F(BadInput, SafetensorsUnknownDtype) {
  auto p = safetensors_header(R"({"w": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}})", 2);
  EXPECT_ERROR(open_st(p), p + ": tensor 'w': dtype: unsupported dtype F8_E4M3");
  p = safetensors_header(R"({"w": {"shape": [2], "data_offsets": [0, 2]}})", 2);
  EXPECT_ERROR(open_st(p), p + ": tensor 'w': dtype: missing");
}

TEST_F(BadInput, SafetensorsShapeOverflow) {
  auto p = safetensors_header(
      R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 4]}})", 4);
  EXPECT_ERROR(open_st(p), "tensor 'w': shape: element count overflows");
}

// Every prefix of a valid GGUF must fail cleanly (or parse, for prefixes that end
// exactly where a vocab-only file could): no crash, no huge allocation.
TEST_F(BadInput, GgufEveryTruncation) {
  Bytes full = tiny_gguf_model().bytes();
  for (size_t n = 0; n < full.size(); ++n) {
    Bytes cut(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
    try {
      GgufFile::parse(cut, "cut.gguf");
      ADD_FAILURE() << "prefix of " << n << " bytes parsed";
    } catch (const Error& e) {
      ASSERT_EQ(std::string(e.what()).rfind("cut.gguf: ", 0), 0u) << e.what();
    }
  }
}

TEST_F(BadInput, SafetensorsEveryTruncation) {
  SafetensorsWriter w;
  w.add_f32("a", {2, 2}, iota_f32(4));
  w.add_f32("b", {3}, iota_f32(3));
  Bytes full = w.bytes();
  for (size_t n = 0; n < full.size(); ++n) {
    Bytes cut(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
    EXPECT_THROW(SafetensorsFile::parse(cut, "cut.safetensors"), Error) << n;
  }
}

TEST_F(BadInput, GgufBadMagicAndVersion) {
  auto p = write("m.gguf", Bytes{'G', 'G', 'U', 'X', 3, 0, 0, 0});
  EXPECT_ERROR(open_gguf(p), p + ": magic: not a GGUF file");
  Bytes v1 = {'G', 'G', 'U', 'F'};
  put<uint32_t>(v1, 1);
  p = write("v1.gguf", v1);
  EXPECT_ERROR(open_gguf(p), p + ": version: expected 2 or 3, got 1");
}

TEST_F(BadInput, GgufHugeCountsAndLengths) {
  Bytes b = {'G', 'G', 'U', 'F'};
  put<uint32_t>(b, 3);
  put<uint64_t>(b, 0);
  put<uint64_t>(b, uint64_t{1} << 60);
  EXPECT_ERROR(open_gguf(write("kv.gguf", b)), "kv.gguf: metadata count: 1152921504606846976 entries cannot fit");

  GgufWriter w;
  GgufWriter::str(w.kv_raw("general.name", GgufWriter::String), "x");
  Bytes good = w.bytes();
  // Patch the string length (after magic, version, counts, key, type) to 2^62.
  size_t len_at = 4 + 4 + 8 + 8 + 8 + std::string("general.name").size() + 4;
  uint64_t huge = uint64_t{1} << 62;
  std::memcpy(good.data() + len_at, &huge, 8);
  EXPECT_ERROR(open_gguf(write("str.gguf", good)), "str.gguf: general.name: string length 4611686018427387904 is past");

  GgufWriter a;
  Bytes& raw = a.kv_raw("tokenizer.ggml.scores", GgufWriter::Array);
  put<uint32_t>(raw, GgufWriter::F32);
  put<uint64_t>(raw, uint64_t{1} << 40);
  EXPECT_ERROR(open_gguf(write("arr.gguf", a.bytes())),
               "arr.gguf: tokenizer.ggml.scores: array of 1099511627776 f32 values cannot fit");

  GgufWriter t;
  t.tensor_f32("w", {4}, iota_f32(4));
  Bytes tb = t.bytes();
  uint64_t many = uint64_t{1} << 50;
  std::memcpy(tb.data() + 8, &many, 8);
  EXPECT_ERROR(open_gguf(write("tc.gguf", tb)), "tc.gguf: tensor count: 1125899906842624 tensors cannot fit");
}

TEST_F(BadInput, GgufDeeplyNestedArrays) {
  GgufWriter w;
  Bytes& raw = w.kv_raw("nest", GgufWriter::Array);
  for (int i = 0; i < 100; ++i) {
    put<uint32_t>(raw, GgufWriter::Array);
    put<uint64_t>(raw, 1);
  }
  EXPECT_ERROR(open_gguf(write("nest.gguf", w.bytes())), "nest.gguf: nest: arrays nested deeper than");
}

TEST_F(BadInput, GgufBadValueType) {
  GgufWriter w;
  put<uint32_t>(w.kv_raw("x", 99), 0);
  EXPECT_ERROR(open_gguf(write("ty.gguf", w.bytes())), "ty.gguf: x type: unknown value type 99");
}

TEST_F(BadInput, GgufTensorOffsetPastEof) {
  GgufWriter w;
  w.tensor_f32("w", {4}, iota_f32(4));
  Bytes b = w.bytes();
  b.resize(b.size() - 4);
  auto p = write("off.gguf", b);
  EXPECT_ERROR(open_gguf(p), p + ": tensor 'w': offset: 0 + 16 bytes is past the end of the data section (12 bytes)");
}

TEST_F(BadInput, GgufTensorInfoFields) {
  GgufWriter dims;
  dims.tensor("w", 0, {1, 1, 1, 1, 1}, Bytes(4));
  EXPECT_ERROR(open_gguf(write("d.gguf", dims.bytes())), "d.gguf: tensor 'w': n_dims: expected 1..4, got 5");
  GgufWriter type;
  type.tensor("w", 77, {4}, Bytes(16));
  EXPECT_ERROR(open_gguf(write("t.gguf", type.bytes())), "t.gguf: tensor 'w': type: unknown ggml type 77");
  GgufWriter block;
  block.tensor("w", 8 /*Q8_0*/, {33}, Bytes(68));
  EXPECT_ERROR(open_gguf(write("b.gguf", block.bytes())), "b.gguf: tensor 'w': dims: innermost dimension 33");
  GgufWriter align;
  align.kv_u32("general.alignment", 24);
  align.tensor_f32("w", {4}, iota_f32(4));
  EXPECT_ERROR(open_gguf(write("a.gguf", align.bytes())), "a.gguf: general.alignment: expected a power of two, got 24");
  GgufWriter dup;
  dup.tensor_f32("w", {4}, iota_f32(4));
  dup.tensor_f32("w", {4}, iota_f32(4));
  EXPECT_ERROR(open_gguf(write("dup.gguf", dup.bytes())), "dup.gguf: tensor 'w': duplicate tensor name");
}

TEST_F(BadInput, GgufUnknownArchitecture) {
  GgufWriter w = tiny_gguf_model("falcon");
  auto p = write("arch.gguf", w.bytes());
  EXPECT_ERROR(load_gguf(p), p + ": general.architecture: unsupported architecture 'falcon'");
}

TEST_F(BadInput, GgufMissingMetadataAndTensor) {
  GgufWriter w;
  w.kv_str("general.architecture", "llama");
  auto p = write("meta.gguf", w.bytes());
  EXPECT_ERROR(load_gguf(p), p + ": llama.block_count: missing");

  GgufWriter w2 = tiny_gguf_model();
  w2.kv_u32("llama.vocab_size", 16);
  Bytes b = w2.bytes();
  // Rename blk.0.ffn_up.weight to blk.0.ffn_xx.weight in place.
  std::string needle = "blk.0.ffn_up.weight";
  auto it = std::search(b.begin(), b.end(), needle.begin(), needle.end());
  ASSERT_NE(it, b.end());
  it[10] = 'x';
  it[11] = 'x';
  p = write("miss.gguf", b);
  EXPECT_ERROR(load_gguf(p), p + ": tensor 'blk.0.ffn_up.weight': missing");
}

TEST_F(BadInput, GgufWrongTensorShape) {
  GgufWriter w = tiny_gguf_model();
  w.kv_u32("llama.feed_forward_length", 12);  // duplicate key: caught first
  EXPECT_ERROR(load_gguf(write("dupkey.gguf", w.bytes())), "llama.feed_forward_length: duplicate metadata key");

  GgufWriter v;
  v.kv_str("general.architecture", "llama");
  v.kv_u32("llama.block_count", 1);
  v.kv_u32("llama.embedding_length", 8);
  v.kv_u32("llama.attention.head_count", 2);
  v.kv_u32("llama.attention.head_count_kv", 1);
  v.kv_u32("llama.feed_forward_length", 12);  // tensors say 16
  v.kv_u32("llama.context_length", 64);
  // The tiny model's tensors under metadata that disagrees with them.
  v.tensor_f32("token_embd.weight", {8, 16}, iota_f32(128));
  v.tensor_f32("output_norm.weight", {8}, iota_f32(8));
  v.tensor_f32("blk.0.attn_norm.weight", {8}, iota_f32(8));
  v.tensor_f32("blk.0.ffn_norm.weight", {8}, iota_f32(8));
  v.tensor_f32("blk.0.attn_q.weight", {8, 8}, iota_f32(64));
  v.tensor_f32("blk.0.attn_k.weight", {8, 4}, iota_f32(32));
  v.tensor_f32("blk.0.attn_v.weight", {8, 4}, iota_f32(32));
  v.tensor_f32("blk.0.attn_output.weight", {8, 8}, iota_f32(64));
  v.tensor_f32("blk.0.ffn_gate.weight", {8, 16}, iota_f32(128));
  v.tensor_f32("blk.0.ffn_up.weight", {8, 16}, iota_f32(128));
  v.tensor_f32("blk.0.ffn_down.weight", {16, 8}, iota_f32(128));
  auto p = write("shape.gguf", v.bytes());
  EXPECT_ERROR(load_gguf(p), p + ": tensor 'blk.0.ffn_gate.weight': shape: expected [12, 8], got [16, 8]");
}

TEST_F(BadInput, HfMissingConfig) {
  write_tiny_hf_model(dir_.path(), tiny_hf_config());
  std::filesystem::remove(dir_.file("config.json"));
  EXPECT_ERROR([&] { load_hf_model(dir_.path()); }, dir_.path() + ": config.json: missing");
}

TEST_F(BadInput, HfMissingWeights) {
  write_text(dir_.file("config.json"), tiny_hf_config().dump());
  EXPECT_ERROR([&] { load_hf_model(dir_.path()); }, dir_.path() + ": model.safetensors: missing");
}

TEST_F(BadInput, HfUnknownArchitecture) {
  nlohmann::json c = tiny_hf_config();
  c["model_type"] = "mamba";
  write_tiny_hf_model(dir_.path(), c);
  EXPECT_ERROR([&] { load_model(dir_.path()); }, dir_.file("config.json") + ": model_type: unsupported architecture 'mamba'");
}

TEST_F(BadInput, HfConfigNotJson) {
  write_tiny_hf_model(dir_.path(), tiny_hf_config());
  write_text(dir_.file("config.json"), "{ not json");
  EXPECT_ERROR([&] { load_hf_model(dir_.path()); }, dir_.file("config.json") + ": not valid JSON");
}

TEST_F(BadInput, HfMissingTensor) {
  nlohmann::json c = tiny_hf_config();
  c["num_hidden_layers"] = 3;  // the checkpoint has 2
  write_tiny_hf_model(dir_.path(), tiny_hf_config());
  write_text(dir_.file("config.json"), c.dump());
  EXPECT_ERROR([&] { load_hf_model(dir_.path()); },
               dir_.file("model.safetensors") + ": tensor 'model.layers.2.input_layernorm.weight': missing");
}

TEST_F(BadInput, HfShardMissing) {
  write_tiny_hf_model(dir_.path(), tiny_hf_config(), /*sharded=*/true);
  std::filesystem::remove(dir_.file("model-00002-of-00002.safetensors"));
  EXPECT_ERROR([&] { load_hf_model(dir_.path()); }, dir_.file("model-00002-of-00002.safetensors") + ": cannot open");
}

TEST_F(BadInput, HfTruncatedSafetensors) {
  write_tiny_hf_model(dir_.path(), tiny_hf_config());
  Bytes b = read_file(dir_.file("model.safetensors"));
  b.resize(b.size() - 10);
  write_file(dir_.file("model.safetensors"), b);
  EXPECT_ERROR([&] { load_hf_model(dir_.path()); }, dir_.file("model.safetensors") + ": tensor '",
               "is past the end of the data section");
}
