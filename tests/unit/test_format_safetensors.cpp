#include <gtest/gtest.h>

#include "common/half.hpp"
#include "format/safetensors.hpp"
#include "headinfer/error.hpp"
#include "test_assets.hpp"
#include "test_format_writers.hpp"

using namespace headinfer;
using namespace headinfer::test;

TEST(Safetensors, ParsesDtypesShapesAndMetadataZeroCopy) {
  SafetensorsWriter w;
  w.add_f32("a", {2, 3}, iota_f32(6));
  Bytes half(8);
  uint16_t h[4] = {f32_to_f16(1.5f), f32_to_f16(-2.0f), f32_to_bf16(3.0f), f32_to_bf16(0.25f)};
  std::memcpy(half.data(), h, 8);
  w.add("b", "F16", {2}, Bytes(half.begin(), half.begin() + 4));
  w.add("c", "BF16", {1, 2}, Bytes(half.begin() + 4, half.end()));
  w.header()["__metadata__"] = {{"format", "pt"}};
  Bytes file = w.bytes();
  SafetensorsFile f = SafetensorsFile::parse(file, "mem.safetensors");

  ASSERT_EQ(f.tensors().size(), 3u);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  const Tensor& a = f.get("a");
  EXPECT_EQ(a.dtype, DType::F32);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3}));
  // Zero copy: the view points into the bytes handed to the parser.
  EXPECT_GE(static_cast<const uint8_t*>(a.data), file.data());
  EXPECT_LT(static_cast<const uint8_t*>(a.data), file.data() + file.size());
  EXPECT_EQ(static_cast<const float*>(a.data)[5], 5.0f);
  float out[2];
  to_f32(DType::F16, f.get("b").data, out, 2);
  EXPECT_EQ(out[0], 1.5f);
  EXPECT_EQ(out[1], -2.0f);
  to_f32(DType::BF16, f.get("c").data, out, 2);
  EXPECT_EQ(out[0], 3.0f);
  EXPECT_EQ(out[1], 0.25f);
  EXPECT_EQ(f.find("missing"), nullptr);
  try {
    f.get("missing");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("mem.safetensors: tensor 'missing'"), std::string::npos) << e.what();
  }
}

TEST(Safetensors, EmptyHeaderObjectHasNoTensors) {
  Bytes b = SafetensorsWriter::assemble("{}", {});
  EXPECT_TRUE(SafetensorsFile::parse(b, "x").tensors().empty());
}

TEST(Safetensors, OpensStories260K) {
  HI_REQUIRE_ASSET("models/stories260K/model.safetensors");
  auto f = SafetensorsFile::open(asset("models/stories260K/model.safetensors"));
  EXPECT_EQ(f.tensors().size(), 47u);
  const Tensor& e = f.get("model.embed_tokens.weight");
  EXPECT_EQ(e.shape, (std::vector<int64_t>{512, 64}));
  EXPECT_EQ(f.get("model.layers.4.mlp.down_proj.weight").shape, (std::vector<int64_t>{64, 172}));
  EXPECT_TRUE(f.mapping() != nullptr);
  EXPECT_GE(static_cast<const uint8_t*>(e.data), f.mapping()->data());
}
