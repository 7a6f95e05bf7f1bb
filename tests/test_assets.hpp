// Where tests find real model/tokenizer files (outside the repo) and committed fixtures.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace headinfer::test {

inline std::string shared_dir() {
  if (const char* env = std::getenv("HEADINFER_SHARED")) return env;
  return HEADINFER_SHARED_DIR;
}

// HEADINFER_FIXTURES overrides the compiled-in path (binaries run from another checkout).
inline std::string fixtures_dir() {
  if (const char* env = std::getenv("HEADINFER_FIXTURES")) return env;
  return HEADINFER_FIXTURES_DIR;
}

// Path of a shared asset, relative to the shared folder ("models/stories260K").
inline std::string asset(const std::string& rel) { return shared_dir() + "/" + rel; }

}  // namespace headinfer::test

// Skips the test (with the reason printed) when a shared asset is missing.
#define HI_REQUIRE_ASSET(rel)                                                                   \
  do {                                                                                          \
    if (!std::filesystem::exists(::headinfer::test::asset(rel)))                               \
      GTEST_SKIP() << "test asset " << ::headinfer::test::asset(rel)                            \
                   << " is absent (set HEADINFER_SHARED to the folder holding models/, tokenizers/)"; \
  } while (0)
