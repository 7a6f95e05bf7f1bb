#include <gtest/gtest.h>

#include "common/units.hpp"
#include "headinfer/error.hpp"

namespace headinfer {

TEST(Units, ParsesSizes) {
  EXPECT_EQ(parse_bytes("24GiB", "--gpu-memory"), 24LL << 30);
  EXPECT_EQ(parse_bytes("512M", "x"), 512LL << 20);
  EXPECT_EQ(parse_bytes("1.5 GB", "x"), 1500000000LL);
  EXPECT_EQ(parse_bytes("4096", "x"), 4096);
  EXPECT_THROW(parse_bytes("lots", "--gpu-memory"), Error);
  EXPECT_THROW(parse_bytes("12 parsecs", "--gpu-memory"), Error);
  EXPECT_THROW(parse_bytes("-3G", "--gpu-memory"), Error);
}

TEST(Units, ParsesTokenCounts) {
  EXPECT_EQ(parse_tokens("16K", "--context"), 16384);
  EXPECT_EQ(parse_tokens("1M", "--context"), 1048576);
  EXPECT_EQ(parse_tokens("4096", "--context"), 4096);
  EXPECT_THROW(parse_tokens("1.3", "--context"), Error);
  EXPECT_THROW(parse_tokens("10G", "--context"), Error);
}

TEST(Units, ErrorNamesTheFlag) {
  try {
    parse_bytes("abc", "--gpu-memory");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--gpu-memory"), std::string::npos);
  }
}

TEST(Units, FormatsBytes) {
  EXPECT_EQ(format_bytes(17), "17 B");
  EXPECT_EQ(format_bytes(3LL << 29), "1.50 GiB");
}

}  // namespace headinfer
