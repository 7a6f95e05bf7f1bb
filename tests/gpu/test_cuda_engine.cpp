// The whole engine on the CUDA backend against the references: stories260K (F32)
// gives HF transformers' 199 greedy ids; tiny models' logits match the CPU backend.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "backend/backend.hpp"
#include "backend/forwarding_backend.hpp"
#include "backend/profiling_backend.hpp"
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

// n prompt ids spread over the vocabulary (past the first three, the special ones).
std::vector<int32_t> prompt_ids(const LoadedModel& m, int n) {
  std::vector<int32_t> ids;
  for (int i = 0; i < n; ++i) ids.push_back(3 + (i * 37) % (m.config.vocab_size - 3));
  return ids;
}

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
  const std::vector<int32_t> ids = prompt_ids(m, 300);
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

// Counts the calls that hand rows over in the weight dtype.
class RowsCalls final : public ForwardingBackend {
 public:
  using ForwardingBackend::ForwardingBackend;
  int mlp_16 = 0, attention_rows = 0;
  void mlp(const void* x, DType dt, int n, const Mat& wgu, const Mat& wd, float* gu, float* out) override {
    mlp_16 += dt != DType::F32;
    ForwardingBackend::mlp(x, dt, n, wgu, wd, gu, out);
  }
  void attention(const AttnArgs& a) override {
    attention_rows += a.out_rows != nullptr;
    ForwardingBackend::attention(a);
  }
};

// GEMM inputs in BF16 (the default; from the norms, from the attention of a chunk with
// no earlier keys; gate/up and the SwiGLU rounded to BF16, as HF does): a BF16 model
// with BF16 KV through chunked prefill and decode stays within BF16's reach of the CPU
// backend's logits and of the f32 rows' (HEADINFER_CUDA_BF16_ROWS=0), and the rows were
// handed over (every prefill MLP; every layer's attention in the first chunk).
TEST(CudaEngine, Bf16RowsLogitsStayCloseToCpu) {
  HI_REQUIRE_GPU();
  LoadedModel m = load_model("synthetic:tiny-gqa,dtype=bf16");
  const std::vector<int32_t> ids = prompt_ids(m, 300);
  auto run = [&](Backend& be) {
    ExecutorOptions eo;
    eo.capacity = 310;
    eo.max_chunk = 64;
    eo.kv_dtype = DType::BF16;
    Executor exec(be, m, eo);
    std::vector<float> logits;
    for (size_t i = 0; i < ids.size(); i += 64) logits = exec.forward(ids.data() + i, std::min<int>(64, 300 - i));
    for (int s = 0; s < 3; ++s) {
      const int32_t t = 5 + s;
      logits = exec.forward(&t, 1);
    }
    return logits;
  };
  auto fused = gpu();
  RowsCalls watch(*fused);
  const auto got = run(watch);
  EXPECT_EQ(watch.mlp_16, 5 * m.config.n_layers) << "one MLP in BF16 a layer in each of the 5 prefill chunks";
  EXPECT_EQ(watch.attention_rows, m.config.n_layers) << "every layer's attention of the first chunk";
  auto cpu = make_cpu_backend(2);
  setenv("HEADINFER_CUDA_BF16_ROWS", "0", 1);
  auto plain = gpu();
  unsetenv("HEADINFER_CUDA_BF16_ROWS");
  const auto want = run(*cpu), base = run(*plain);
  auto rel = [](const std::vector<float>& a, const std::vector<float>& b) {
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      if (std::isnan(a[i])) return std::numeric_limits<double>::infinity();
      num = std::max(num, static_cast<double>(std::abs(a[i] - b[i])));
      den = std::max(den, static_cast<double>(std::abs(b[i])));
    }
    return num / den;
  };
  EXPECT_LT(rel(got, want), 3e-2) << "vs the CPU backend";
  EXPECT_LT(rel(got, base), 3e-2) << "vs the f32 rows";
}

// The profiler on CUDA times ops with device timestamps: no op waits, every op that
// ran is charged, and the logits keep every bit.
TEST(CudaEngine, ProfilerTimesOpsOnTheDeviceWithoutChangingBits) {
  HI_REQUIRE_GPU();
  LoadedModel m = load_model("synthetic:tiny-gqa");
  const std::vector<int32_t> ids = prompt_ids(m, 100);
  auto run = [&](Backend& be) {
    ExecutorOptions eo;
    eo.capacity = 110;
    eo.max_chunk = 64;
    Executor exec(be, m, eo);
    std::vector<float> logits = exec.forward(ids.data(), 64);
    logits = exec.forward(ids.data() + 64, 36);
    for (int s = 0; s < 3; ++s) {
      const int32_t t = 5 + s;
      logits = exec.forward(&t, 1);
    }
    return logits;
  };
  auto cuda = gpu();
  const auto want = run(*cuda);
  ProfilingBackend prof(*cuda);
  prof.set_enabled(true);
  ASSERT_TRUE(prof.device_timed());
  const auto got = run(prof);
  prof.set_enabled(false);
  ASSERT_EQ(want.size(), got.size());
  EXPECT_EQ(0, std::memcmp(want.data(), got.data(), want.size() * sizeof(float)));
  const PhaseTimes& t = prof.times();
  const int forwards = 2 + 3;
  // A prefill MLP in the weight dtype (BF16 weights, BF16 rows by default) is one op,
  // "mlp", in place of its two GEMMs; decode's are the GEMMs.
  int64_t mlp_ops = 0;  // ops named "mlp <shape>"
  for (const auto& [name, o] : prof.op_times())
    if (name.rfind("mlp", 0) == 0) mlp_ops += o.calls;
  EXPECT_EQ(mlp_ops, 2 * m.config.n_layers) << "every layer's MLP of the two prefill forwards";
  EXPECT_EQ(t.calls_of(Phase::Gemm), forwards * (4 * m.config.n_layers + 1) - mlp_ops);
  for (Phase ph : {Phase::Gemm, Phase::Attention, Phase::Other}) EXPECT_GT(t.of(ph), 0.0) << phase_name(ph);
  int64_t calls = 0;
  for (const auto& [name, o] : prof.op_times()) {
    EXPECT_GE(o.seconds, 0.0) << name;
    calls += o.calls;
  }
  EXPECT_EQ(calls, t.calls_of(Phase::Gemm) + t.calls_of(Phase::Attention) + t.calls_of(Phase::Other));
}

}  // namespace
}  // namespace headinfer
