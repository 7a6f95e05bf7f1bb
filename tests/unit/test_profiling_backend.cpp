// ProfilingBackend: forwards every Backend virtual to the wrapped backend, changes
// no bit of the Executor's logits (offloaded schedule included), and charges ops to
// the right phase only while enabled.
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <string>

#include "backend/profiling_backend.hpp"
#include "format/model_loader.hpp"
#include "offload_runs.hpp"
#include "runtime/executor.hpp"

namespace headinfer {
namespace {

// Counts the calls that reach it, by method name.
class RecordingBackend final : public Backend {
 public:
  std::map<std::string, int> calls;
  bool timing = false;  // whether it has timing events (each pair reads 0.25 s apart)
  void hit(const char* m) { ++calls[m]; }

  std::string name() const override { return "recording"; }
  void* alloc(size_t) override { hit("alloc"); return &scratch_; }
  void free(void*) override { hit("free"); }
  void upload(void*, const void*, size_t) override { hit("upload"); }
  void download(void*, const void*, size_t) override { hit("download"); }
  void copy(void*, const void*, size_t) override { hit("copy"); }
  Mat prepare(const Tensor&, std::vector<std::shared_ptr<const void>>&) override { hit("prepare"); return {}; }
  void embed(const int32_t*, int, const Mat&, float*) override { hit("embed"); }
  void rmsnorm(const float*, const Mat&, float, int, float*) override { hit("rmsnorm"); }
  void matmul(const float*, int, const Mat&, const Mat*, float*) override { hit("matmul"); }
  void matmul_strided(const float*, int64_t, int, const Mat&, const Mat*, float*) override { hit("matmul_strided"); }
  void rope(const RopeArgs&) override { hit("rope"); }
  void attention(const AttnArgs&) override { hit("attention"); }
  void merge_attention(float*, float*, const float*, const float*, int, int, int, int64_t, int64_t) override {
    hit("merge_attention");
  }
  void combine_attention(const float*, const float*, int, int, int, int, float*, int64_t, float*) override {
    hit("combine_attention");
  }
  void swiglu(const float*, const float*, int, int64_t, int64_t, float*, int64_t) override { hit("swiglu"); }
  void add(float*, const float*, int64_t) override { hit("add"); }
  void store_kv(const float*, int64_t, int, int, DType, void*) override { hit("store_kv"); }
  void store_kv_heads(const float*, const float*, int64_t, int, int, int, DType, void* const*, void* const*) override {
    hit("store_kv_heads");
  }
  void rope_store_kv_heads(const RopeArgs&, const float*, const float*, int64_t, int, int, int, DType, void* const*,
                           void* const*) override {
    hit("rope_store_kv_heads");
  }
  void matmul_rope_store_kv(const void*, DType, int, const Mat&, const Mat*, const RopeArgs&, int, DType, void* const*,
                            void* const*) override {
    hit("matmul_rope_store_kv");
  }
  int32_t argmax(const float*, int64_t) override {
    hit("argmax");
    return 3;
  }
  void synchronize() override { hit("synchronize"); }
  void* alloc_host(size_t) override { hit("alloc_host"); return &scratch_; }
  void free_host(void*) override { hit("free_host"); }
  Event create_event() override { hit("create_event"); return Event{7}; }
  void destroy_event(Event) override { hit("destroy_event"); }
  Event create_timing_event() override {
    hit("create_timing_event");
    return timing ? Event{++next_timing_} : Event{};
  }
  double elapsed_seconds(Event, Event) override {
    hit("elapsed_seconds");
    return 0.25;
  }
  void record(Event, Stream) override { hit("record"); }
  void wait(Stream, Event) override { hit("wait"); }
  void sync(Event) override { hit("sync"); }
  void copy_h2d_async(void*, const void*, size_t) override { hit("copy_h2d_async"); }
  void copy_d2h_async(void*, const void*, size_t) override { hit("copy_d2h_async"); }
  void copy_h2d_2d_async(void*, size_t, const void*, size_t, size_t, size_t) override { hit("copy_h2d_2d_async"); }
  void copy_d2h_2d_async(void*, size_t, const void*, size_t, size_t, size_t) override { hit("copy_d2h_2d_async"); }
  void set_device_limit(int64_t) override { hit("set_device_limit"); }
  DeviceMemoryInfo device_memory() const override {
    DeviceMemoryInfo m;
    m.peak = 42;
    return m;
  }
  void reset_device_peak() override { hit("reset_device_peak"); }

 private:
  int scratch_ = 0;
  uint64_t next_timing_ = 100;
};

TEST(ProfilingBackend, ForwardsEveryVirtual) {
  RecordingBackend rec;
  ProfilingBackend p(rec);
  std::vector<std::shared_ptr<const void>> keep;
  Tensor t;
  Mat m;
  float f = 0;
  void* d = p.alloc(4);
  p.free(d);
  p.upload(nullptr, nullptr, 0);
  p.download(nullptr, nullptr, 0);
  p.copy(nullptr, nullptr, 0);
  p.prepare(t, keep);
  p.embed(nullptr, 0, m, &f);
  p.rmsnorm(nullptr, m, 0, 0, &f);
  p.matmul(nullptr, 0, m, nullptr, &f);
  p.matmul_strided(nullptr, 0, 0, m, nullptr, &f);
  p.rope(RopeArgs{});
  p.attention(AttnArgs{});
  p.merge_attention(&f, &f, &f, &f, 0, 0, 0, 0, 0);
  p.combine_attention(&f, &f, 0, 0, 0, 0, &f, 0, nullptr);
  p.swiglu(nullptr, nullptr, 0, 0, 0, &f, 0);
  p.add(&f, &f, 0);
  p.store_kv(nullptr, 0, 0, 0, DType::F32, nullptr);
  p.store_kv_heads(nullptr, nullptr, 0, 0, 0, 0, DType::F32, nullptr, nullptr);
  p.rope_store_kv_heads(RopeArgs{}, nullptr, nullptr, 0, 0, 0, 0, DType::F32, nullptr, nullptr);
  p.matmul_rope_store_kv(nullptr, DType::F32, 0, m, nullptr, RopeArgs{}, 0, DType::F32, nullptr, nullptr);
  EXPECT_EQ(p.argmax(&f, 1), 3);
  p.synchronize();
  p.free_host(p.alloc_host(4));
  Event e = p.create_event();
  EXPECT_EQ(e.id, 7u);
  p.record(e, Stream::H2D);
  p.wait(Stream::Compute, e);
  p.sync(e);
  p.destroy_event(e);
  EXPECT_FALSE(p.create_timing_event());
  EXPECT_EQ(p.elapsed_seconds(Event{1}, Event{2}), 0.25);
  p.copy_h2d_async(nullptr, nullptr, 0);
  p.copy_d2h_async(nullptr, nullptr, 0);
  p.copy_h2d_2d_async(nullptr, 0, nullptr, 0, 0, 0);
  p.copy_d2h_2d_async(nullptr, 0, nullptr, 0, 0, 0);
  p.set_device_limit(-1);
  p.reset_device_peak();
  EXPECT_EQ(p.device_memory().peak, 42);
  EXPECT_EQ(p.name(), "recording");
  for (const char* method : {"alloc",
                             "free",
                             "upload",
                             "download",
                             "copy",
                             "prepare",
                             "embed",
                             "rmsnorm",
                             "matmul",
                             "rope",
                             "attention",
                             "merge_attention",
                             "combine_attention",
                             "matmul_strided",
                             "swiglu",
                             "add",
                             "store_kv",
                             "store_kv_heads",
                             "rope_store_kv_heads",
                             "matmul_rope_store_kv",
                             "argmax",
                             "synchronize",
                             "alloc_host",
                             "free_host",
                             "create_event",
                             "destroy_event",
                             "create_timing_event",
                             "elapsed_seconds",
                             "record",
                             "wait",
                             "sync",
                             "copy_h2d_async",
                             "copy_d2h_async",
                             "copy_h2d_2d_async",
                             "copy_d2h_2d_async",
                             "set_device_limit",
                             "reset_device_peak"})
    EXPECT_EQ(rec.calls[method], 1) << method;
  // Disabled: nothing timed, no extra events or waits.
  EXPECT_EQ(p.times().total(), 0.0);
}

TEST(ProfilingBackend, EnabledSynchronisesOnTheComputeStreamAroundOps) {
  RecordingBackend rec;
  ProfilingBackend p(rec);
  p.set_enabled(true);
  float f = 0;
  p.matmul(nullptr, 0, Mat{}, nullptr, &f);
  EXPECT_EQ(rec.calls["create_event"], 1);
  EXPECT_EQ(rec.calls["record"], 2);  // before and after the op
  EXPECT_EQ(rec.calls["sync"], 2);
  EXPECT_EQ(rec.calls["synchronize"], 0);  // copy streams are left running
  EXPECT_EQ(p.times().calls_of(Phase::Gemm), 1);
  EXPECT_FALSE(p.device_timed());
  EXPECT_EQ(p.op_times().at("matmul 0x0").calls, 1);
}

TEST(ProfilingBackend, WithTimingEventsNothingWaitsAndTimesAreReadOnceDisabled) {
  RecordingBackend rec;
  rec.timing = true;
  ProfilingBackend p(rec);
  p.set_enabled(true);
  EXPECT_TRUE(p.device_timed());
  float f = 0;
  Mat w;
  w.rows = 6144;
  w.cols = 4096;
  p.matmul(nullptr, 1, w, nullptr, &f);
  p.matmul(nullptr, 1, w, nullptr, &f);
  p.rope(RopeArgs{});
  EXPECT_EQ(rec.calls["record"], 6);  // a timestamp before and after each op
  EXPECT_EQ(rec.calls["sync"], 0);    // and no wait
  EXPECT_EQ(rec.calls["elapsed_seconds"], 0);
  EXPECT_EQ(p.times().total(), 0.0);  // not read back yet
  p.set_enabled(false);
  EXPECT_EQ(rec.calls["elapsed_seconds"], 3);
  EXPECT_DOUBLE_EQ(p.times().of(Phase::Gemm), 0.5);
  EXPECT_DOUBLE_EQ(p.times().of(Phase::Other), 0.25);
  EXPECT_EQ(p.op_times().at("matmul 6144x4096").calls, 2);
  EXPECT_DOUBLE_EQ(p.op_times().at("rope").seconds, 0.25);
  // Events are reused, not made per op: one probe plus the pairs in flight at once.
  const int made = rec.calls["create_timing_event"];
  p.set_enabled(true);
  p.rope(RopeArgs{});
  p.set_enabled(false);
  EXPECT_EQ(rec.calls["create_timing_event"], made);
  p.reset();
  EXPECT_EQ(p.op_times().size(), 0u);
}

TEST(ProfilingBackend, PhasesOfAnExecutorRunAndSameBits) {
  const LoadedModel m = load_model("synthetic:tiny-gqa");
  const ModelConfig& c = m.config;
  auto cpu = make_cpu_backend(CpuBackendOptions{2, -1, 20});
  const auto prompt = offload_test::prompt_for(40, c.vocab_size, 3);
  offload_test::RunSpec spec;
  spec.chunk = 16;
  spec.kv_dtype = DType::BF16;
  std::mt19937 rng(5);
  spec.schedule = offload_test::random_schedule(c, spec.kv_dtype, 8, rng, /*kind=every slab on the host*/ 0);
  const auto want = offload_test::run(*cpu, m, prompt, 3, spec);

  ProfilingBackend prof(*cpu);
  prof.set_enabled(true);
  const auto got = offload_test::run(prof, m, prompt, 3, spec);
  ASSERT_EQ(want.size(), got.size());
  for (size_t i = 0; i < want.size(); ++i)
    EXPECT_EQ(0, std::memcmp(want[i].data(), got[i].data(), want[i].size() * sizeof(float))) << "step " << i;

  const PhaseTimes& t = prof.times();
  // 3 prefill chunks and 3 decode steps: 4 matmuls per layer (fused Q/K/V with its RoPE
  // and K/V store, O, fused gate/up with its SwiGLU, down; the MLP in one pass at these
  // sizes) plus the LM head, per forward.
  const int forwards = 3 + 3;
  EXPECT_EQ(t.calls_of(Phase::Gemm), forwards * (4 * c.n_layers + 1));
  EXPECT_GT(t.calls_of(Phase::Attention), 0);
  // embed, the first layer's norm; per layer 2 residual adds fused with the norm after
  // them (the last layer's with the output norm).
  EXPECT_EQ(t.calls_of(Phase::Other), forwards * (2 + 2 * c.n_layers));
  for (Phase ph : {Phase::Gemm, Phase::Attention, Phase::Other}) EXPECT_GT(t.of(ph), 0.0) << phase_name(ph);
  EXPECT_NEAR(t.total(), t.of(Phase::Gemm) + t.of(Phase::Attention) + t.of(Phase::Other), 1e-12);

  prof.reset();
  prof.set_enabled(false);
  offload_test::run(prof, m, prompt, 1, spec);
  EXPECT_EQ(prof.times().total(), 0.0);
  EXPECT_EQ(prof.times().calls_of(Phase::Gemm), 0);
}

}  // namespace
}  // namespace headinfer
