// The engine's needle model against an independent build of the same construction
// in Hugging Face transformers (scripts/reference/needle_logits.py, float32): the
// logits after a 4K passkey prompt, and after three prefixes ending on filler
// words (spread over many ids), must agree within 1e-3 of the largest logit.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>

#include <nlohmann/json.hpp>

#include "backend/backend.hpp"
#include "format/model_loader.hpp"
#include "format/needle.hpp"
#include "runtime/executor.hpp"
#include "runtime/sampler.hpp"
#include "test_assets.hpp"

namespace headinfer {
namespace {

constexpr const char* kFixture = "needle_logits_4k.json";

nlohmann::json read_fixture() {
  const std::string path = test::fixtures_dir() + "/" + kFixture;
  std::ifstream in(path);
  EXPECT_TRUE(in) << path << ": missing (make it with scripts/reference/needle_logits.py)";
  return nlohmann::json::parse(in);
}

void expect_close(const std::vector<float>& got, const std::vector<float>& want, const std::string& where) {
  ASSERT_EQ(got.size(), want.size()) << where;
  float scale = 0;
  for (float v : want) scale = std::max(scale, std::fabs(v));
  ASSERT_GT(scale, 1.0f) << where << ": reference logits are all near zero";
  float worst = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_NEAR(got[i], want[i], 1e-3 * scale) << where << ": logit of id " << i;
    worst = std::max(worst, std::fabs(got[i] - want[i]));
  }
  std::printf("%s: max |engine - reference| = %.3g (%.3g of the largest logit %.3f)\n", where.c_str(), worst,
              worst / scale, scale);
  EXPECT_EQ(argmax(got), argmax(want)) << where;
}

TEST(NeedleParity, LogitsMatchTheHfReferenceAt4K) {
  const nlohmann::json fx = read_fixture();
  const std::vector<int32_t> ids = fx.at("ids").get<std::vector<int32_t>>();
  ASSERT_EQ(static_cast<int64_t>(ids.size()), fx.at("context").get<int64_t>());
  LoadedModel m = load_model("synthetic:needle,dtype=f32");
  auto be = make_cpu_backend();
  ExecutorOptions eo;
  eo.max_chunk = 512;
  eo.capacity = static_cast<int64_t>(ids.size());
  eo.kv_dtype = DType::F32;
  Executor exec(*be, m, eo);

  // Chunks end exactly at each checked prefix, where forward() returns that position's logits.
  std::vector<std::pair<int64_t, std::vector<float>>> checks;
  for (const auto& c : fx.at("checks")) checks.emplace_back(c.at("prefix").get<int64_t>(), c.at("logits").get<std::vector<float>>());
  std::sort(checks.begin(), checks.end());
  int64_t done = 0;
  for (const auto& [prefix, want] : checks) {
    while (done < prefix) {
      const int n = static_cast<int>(std::min<int64_t>(eo.max_chunk, prefix - done));
      const std::vector<float>& logits = exec.forward(ids.data() + done, n);
      done += n;
      if (done == prefix) expect_close(logits, want, "prefix " + std::to_string(prefix));
    }
  }
  EXPECT_EQ(done, static_cast<int64_t>(ids.size()));
  // The last position is the passkey question: its argmax is the key's first digit.
  EXPECT_EQ(argmax(fx.at("logits").get<std::vector<float>>()), fx.at("key").at(0).get<int>());
}

}  // namespace
}  // namespace headinfer
