// The command line as users meet it: exit codes, one-line errors naming the
// file or flag, and the outputs of tokenize / info / generate.
#include <gtest/gtest.h>

#include "cli_runner.hpp"


#include <fstream>
#include <string>

#include "test_assets.hpp"

namespace {

using headinfer::test::cli;
using headinfer::test::CliRun;
using headinfer::test::lines;

TEST(Cli, HelpEverywhere) {
  for (const char* sub : {"", "generate ", "info ", "tokenize "}) {
    CliRun r = cli(std::string(sub) + "--help");
    EXPECT_EQ(r.code, 0) << sub;
    EXPECT_NE(r.out.find("Usage"), std::string::npos) << sub;
  }
}

TEST(Cli, MissingModelIsOneLineNamingThePath) {
  CliRun r = cli("info -m /nonexistent/model-dir");
  EXPECT_NE(r.code, 0);
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("/nonexistent/model-dir"), std::string::npos) << r.err;
}

TEST(Cli, PromptLongerThanMaxContextIsRefused) {
  CliRun r = cli("generate -m synthetic:tiny-gqa --prompt-tokens 100 --max-context 50 -n 1");
  EXPECT_NE(r.code, 0);
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("--max-context"), std::string::npos) << r.err;
}

TEST(Cli, MaxContextPastTrainedLengthWarns) {
  CliRun r = cli("generate -m synthetic:tiny-gqa --prompt-tokens 8 --max-context 100M -n 2 --temp 0");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("warning"), std::string::npos) << r.err;
}

TEST(Cli, BadFlagValuesAreOneLine) {
  for (const char* args : {"generate -m synthetic:tiny-gqa -p hi --backend tpu",
                           "generate -m synthetic:tiny-gqa -p hi --kv-type q3",
                           "generate -m synthetic:tiny-gqa -p hi --max-context lots",
                           "generate -m synthetic:nonesuch -p hi"}) {
    CliRun r = cli(args);
    EXPECT_NE(r.code, 0) << args;
    EXPECT_EQ(lines(r.err), 1) << args << ": " << r.err;
  }
}

TEST(Cli, GenerateStreamsTextAndEndsWithStats) {
  CliRun r = cli("generate -m synthetic:tiny-gqa --prompt-tokens 40 -n 5 --temp 0 --ignore-eos --chunk-size 16");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("stats:"), std::string::npos);
  EXPECT_NE(r.err.find("prompt 40 tok"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("peak RSS"), std::string::npos) << r.err;
}

TEST(Cli, TokenizeStories) {
  HI_REQUIRE_ASSET("models/stories260K/tokenizer.model");
  CliRun r = cli("tokenize -m " + headinfer::test::asset("models/stories260K") + " -p 'Once upon a time'");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("1 ", 0), 0u) << r.out;  // BOS first
  CliRun nb = cli("tokenize --no-bos -m " + headinfer::test::asset("models/stories260K") + " -p 'Once upon a time'");
  EXPECT_EQ(nb.out, r.out.substr(2));
}

TEST(Cli, InfoShowsShapesAndKvBytes) {
  CliRun r = cli("info -m synthetic:llama-3-8b");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("32 layers"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("GQA: 32 query heads, 8 KV heads"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("128.00 KiB (BF16)"), std::string::npos) << r.out;
}

}  // namespace

namespace {

TEST(Cli, MissingTokenizerNamesTheDirectory) {
  HI_REQUIRE_ASSET("models/stories260K/model.safetensors");
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(::testing::TempDir()) / "model_without_tokenizer";
  fs::create_directories(dir);
  for (const char* f : {"config.json", "model.safetensors"})
    fs::copy_file(headinfer::test::asset(std::string("models/stories260K/") + f), dir / f,
                  fs::copy_options::overwrite_existing);
  CliRun r = cli("generate -m " + dir.string() + " -p hi -n 1");
  EXPECT_NE(r.code, 0);
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find(dir.string()), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("tokenizer"), std::string::npos) << r.err;
}

}  // namespace
