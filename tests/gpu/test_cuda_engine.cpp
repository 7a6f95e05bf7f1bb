// The whole engine on the CUDA backend against the references: stories260K (F32)
// gives HF transformers' 199 greedy ids; tiny models' logits match the CPU backend.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>

#include "backend/backend.hpp"
#include "format/model_loader.hpp"
#include "runtime/executor.hpp"
#include "runtime/generator.hpp"
#include "test_assets.hpp"
#ifdef HEADINFER_HAVE_CUDA
#include "backend/cuda/cuda_backend.hpp"
#endif

namespace headinfer {
namespace {

#ifdef HEADINFER_HAVE_CUDA
#define HI_REQUIRE_GPU() \
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: GPU test skipped"
std::unique_ptr<Backend> gpu() { return make_cuda_backend(0); }
#else
#define HI_REQUIRE_GPU() GTEST_SKIP() << "built without CUDA: GPU test skipped"
std::unique_ptr<Backend> gpu() { return nullptr; }
#endif

TEST(CudaEngine, Stories260KGreedyMatchesTransformers) {
  HI_REQUIRE_GPU();
  HI_REQUIRE_ASSET("models/stories260K/model.safetensors");
  std::ifstream in(test::fixtures_dir() + "/stories260K_greedy.json");
  ASSERT_TRUE(in);
  const auto ref = nlohmann::json::parse(in).at("generated").get<std::vector<int32_t>>();
  LoadedModel m = load_model(test::asset("models/stories260K"));
  auto tok = m.load_tokenizer();
  auto be = gpu();
  ExecutorOptions eo;
  eo.capacity = 200;
  Executor exec(*be, m, eo);
  Generator gen(exec, *tok);
  GenerateRequest req;
  req.prompt = {tok->bos_id()};
  req.max_tokens = 199;
  req.sampling.temperature = 0;
  req.ignore_eos = true;
  req.max_context = 512;
  EXPECT_EQ(gen.run(req).tokens, ref);
}

class CudaTiny : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaTiny, LogitsMatchCpuBackendAfterChunkedPrefillAndDecode) {
  HI_REQUIRE_GPU();
  LoadedModel m = load_model("synthetic:" + GetParam() + ",dtype=f32");
  std::vector<int32_t> ids;
  for (int i = 0; i < 300; ++i) ids.push_back(3 + (i * 37) % (m.config.vocab_size - 3));
  auto run = [&](Backend& be) {
    ExecutorOptions eo;
    eo.capacity = 310;
    eo.max_chunk = 64;
    Executor exec(be, m, eo);
    std::vector<float> logits;
    for (size_t i = 0; i < ids.size(); i += 64) {
      const int n = static_cast<int>(std::min<size_t>(64, ids.size() - i));
      logits = exec.forward(ids.data() + i, n);
    }
    for (int s = 0; s < 5; ++s) {
      const int32_t t = 5 + s;
      logits = exec.forward(&t, 1);
    }
    return logits;
  };
  auto cpu = make_cpu_backend(2);
  auto cuda = gpu();
  const auto a = run(*cpu), b = run(*cuda);
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_FALSE(std::isnan(b[i]));
    num = std::max(num, static_cast<double>(std::abs(a[i] - b[i])));
    den = std::max(den, static_cast<double>(std::abs(a[i])));
  }
  EXPECT_LT(num / den, 1e-4) << "max abs diff " << num << " over max |logit| " << den;
}

INSTANTIATE_TEST_SUITE_P(Attention, CudaTiny, ::testing::Values("tiny-mha", "tiny-gqa", "tiny-mqa"));

}  // namespace
}  // namespace headinfer
