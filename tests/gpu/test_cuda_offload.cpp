// Head-wise offloading on the CUDA backend (docs/offload.md, issue 4).
//
// Invariant 1 on a GPU: for random schedules (every slab on the host, none, random
// subsets; group sizes 1..all; buffer counts and sizes that force streaming in token
// blocks) the logits after a chunked prefill and after every decode step equal the
// all-resident CUDA run's bit for bit, for tiny MHA/GQA/MQA models and a 4-layer
// Llama-3-8B-shaped model at 32K. They run with the copy streams or the compute
// stream delayed (the backend's test knobs), and a control run that drops one
// stream's event waits must then give different bits: so the waits the CPU backend
// cannot exercise (buffer reuse, staging) are shown to matter and to hold here.
// Also: the budget (accounted peak = the plan, driver-measured peak under
// --gpu-memory), budget refusals, and no pinned memory leaks across requests.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <sstream>
#include <utility>
#include <vector>

#include "backend/backend.hpp"
#include "backend/forwarding_backend.hpp"
#include "common/units.hpp"
#include "format/model_loader.hpp"
#include "headinfer/error.hpp"
#include "kv/plan.hpp"
#include "offload_runs.hpp"
#include "runtime/executor.hpp"
#ifdef HEADINFER_HAVE_CUDA
#include "backend/cuda/cuda_backend.hpp"
#endif

namespace headinfer {
namespace {

#ifdef HEADINFER_HAVE_CUDA
#define HI_REQUIRE_GPU() \
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: GPU test skipped"
int64_t pinned_live(const Backend& be) { return cuda_pinned_stats(be).live_bytes; }
#else
#define HI_REQUIRE_GPU() GTEST_SKIP() << "built without CUDA: GPU test skipped"
int64_t pinned_live(const Backend&) { return 0; }
#endif

// A CUDA backend made with the given stream delays (microseconds; the backend reads
// them when it is made).
std::unique_ptr<Backend> gpu(int copy_delay_us = 0, int compute_delay_us = 0) {
#ifdef HEADINFER_HAVE_CUDA
  setenv("HEADINFER_CUDA_COPY_DELAY_US", std::to_string(copy_delay_us).c_str(), 1);
  setenv("HEADINFER_CUDA_COMPUTE_DELAY_US", std::to_string(compute_delay_us).c_str(), 1);
  auto be = make_cuda_backend(0);
  unsetenv("HEADINFER_CUDA_COPY_DELAY_US");
  unsetenv("HEADINFER_CUDA_COMPUTE_DELAY_US");
  return be;
#else
  (void)copy_delay_us;
  (void)compute_delay_us;
  return nullptr;
#endif
}

// Forwards everything to another backend but drops every wait() issued for one
// stream: a schedule run through it is missing those orderings (the control).
class DropWaits final : public ForwardingBackend {
 public:
  DropWaits(Backend& inner, Stream dropped) : ForwardingBackend(inner), dropped_(dropped) {}
  void wait(Stream s, Event e) override {
    if (s != dropped_) inner_.wait(s, e);
  }

 private:
  Stream dropped_;
};

using offload_test::prompt_for;
using offload_test::random_schedule;
using offload_test::run;
using offload_test::RunSpec;


bool same_bits(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b, std::string* where) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].size() != b[i].size() || std::memcmp(a[i].data(), b[i].data(), a[i].size() * sizeof(float)) != 0) {
      if (where) *where = "logits differ at step " + std::to_string(i);
      return false;
    }
  }
  return true;
}

// ---- Tiny models, random schedules, with and without delayed streams.

struct DelayCase {
  const char* model;
  int copy_us, compute_us;
};
void PrintTo(const DelayCase& c, std::ostream* os) {
  *os << c.model << " copy " << c.copy_us << " us compute " << c.compute_us << " us";
}

class CudaOffloadExact : public ::testing::TestWithParam<DelayCase> {};

TEST_P(CudaOffloadExact, RandomSchedulesMatchAllResidentBitForBit) {
  HI_REQUIRE_GPU();
  const DelayCase dc = GetParam();
  const LoadedModel m = load_model(std::string("synthetic:") + dc.model);
  auto be = gpu(dc.copy_us, dc.compute_us);
  std::mt19937 rng(static_cast<unsigned>(std::hash<std::string>{}(dc.model)) + dc.copy_us + 7 * dc.compute_us);
  const struct {
    int prompt, chunk, decode;
    int64_t block;
    DType kv;
  } cases[] = {
      {37, 16, 4, 8, DType::F32},  {50, 7, 3, 4, DType::BF16}, {64, 64, 5, 16, DType::F32},
      {29, 1, 2, 8, DType::F16},   {45, 32, 4, 5, DType::F32},  {40, 10, 3, 64, DType::BF16},
      {300, 96, 4, 32, DType::BF16},
  };
  int n_runs = 0;
  for (const auto& c : cases) {
    const auto prompt = prompt_for(c.prompt, m.config.vocab_size, static_cast<unsigned>(c.prompt));
    RunSpec ref;
    ref.chunk = c.chunk;
    ref.kv_dtype = c.kv;
    ref.schedule = KvSchedule::all_resident(m.config, c.kv);
    ref.schedule.block_tokens = c.block;
    const auto want = run(*be, m, prompt, c.decode, ref);
    for (int kind = 0; kind < 4; ++kind) {
      RunSpec s = ref;
      s.schedule = random_schedule(m.config, c.kv, c.block, rng, kind);
      if (kind == 3) s.mlp_chunk = std::max(1, c.chunk / 3);
      TransferStats st;
      const auto got = run(*be, m, prompt, c.decode, s, &st);
      std::ostringstream what;
      what << dc.model << " (delays " << dc.copy_us << "/" << dc.compute_us << " us) prompt " << c.prompt << " chunk "
           << c.chunk << " block " << c.block << " kind " << kind << " offloaded " << s.schedule.offloaded_slabs()
           << " buffers " << s.schedule.n_buffers << "x" << s.schedule.buffer_bytes;
      std::string where;
      EXPECT_TRUE(same_bits(want, got, &where)) << what.str() << ": " << where;
      if (s.schedule.offloaded_slabs() > 0) EXPECT_GT(st.h2d_bytes, 0) << what.str();
      if (s.schedule.offloaded_slabs() == 0) EXPECT_EQ(st.h2d_bytes + st.d2h_bytes, 0) << what.str();
      EXPECT_EQ(pinned_live(*be), 0) << what.str() << ": pinned host memory outlived its executor";
      EXPECT_EQ(be->device_memory().in_use, 0) << what.str() << ": device memory outlived its executor";
      ++n_runs;
    }
  }
  EXPECT_EQ(n_runs, 28);
}

INSTANTIATE_TEST_SUITE_P(Models, CudaOffloadExact,
                         ::testing::Values(DelayCase{"tiny-mha", 0, 0}, DelayCase{"tiny-gqa", 0, 0},
                                           DelayCase{"tiny-mqa", 0, 0}, DelayCase{"tiny-gqa", 40, 0},
                                           DelayCase{"tiny-mha", 0, 40}, DelayCase{"tiny-mqa", 40, 0},
                                           DelayCase{"tiny-mqa", 0, 40}),
                         [](const auto& info) {
                           std::string n = info.param.model;
                           for (char& ch : n)
                             if (ch == '-') ch = '_';
                           return n + "_copy" + std::to_string(info.param.copy_us) + "_compute" +
                                  std::to_string(info.param.compute_us);
                         });

// The control: without one stream's waits, delayed streams give other bits. Compute
// not waiting (filled, appended): attention reads buffers before their copies land.
// H2D not waiting (consumed, forward_done): a fill overwrites a buffer still being
// read. D2H not waiting (staged): appends copy staging rows before they are written.
TEST(CudaOffloadExact, DroppingAnyStreamsWaitsChangesTheBits) {
  HI_REQUIRE_GPU();
  const LoadedModel m = load_model("synthetic:tiny-gqa");
  const ModelConfig& c = m.config;
  const auto prompt = prompt_for(40, c.vocab_size, 3);
  RunSpec ref;
  ref.chunk = 16;
  ref.kv_dtype = DType::F32;
  ref.schedule = KvSchedule::all_resident(c, DType::F32);
  ref.schedule.block_tokens = 8;
  RunSpec off = ref;
  for (Home& h : off.schedule.homes) h = Home::Host;
  off.schedule.n_buffers = 2;
  off.schedule.buffer_bytes = 2 * 8 * static_cast<int64_t>(kv_row_bytes(c, DType::F32));  // one head, one block
  const struct {
    Stream dropped;
    int copy_us, compute_us;
  } controls[] = {{Stream::Compute, 2000, 0}, {Stream::H2D, 0, 2000}, {Stream::D2H, 0, 2000}};
  for (const auto& k : controls) {
    auto be = gpu(k.copy_us, k.compute_us);
    const auto want = run(*be, m, prompt, 3, ref);
    EXPECT_TRUE(same_bits(want, run(*be, m, prompt, 3, off), nullptr))
        << "with every wait (delays " << k.copy_us << "/" << k.compute_us << " us)";
    DropWaits broken(*be, k.dropped);
    EXPECT_FALSE(same_bits(want, run(broken, m, prompt, 3, off), nullptr))
        << "dropping the " << stream_name(k.dropped) << " stream's waits went unnoticed";
  }
}

// Greedy steps queued ahead of the host (Executor::issue_greedy) give the lock-step ids,
// resident and offloaded, with slow copies and with slow compute.
TEST(CudaOffloadExact, GreedyStepsIssuedAheadGiveTheLockStepIds) {
  HI_REQUIRE_GPU();
  const LoadedModel m = load_model("synthetic:tiny-gqa");
  const auto prompt = prompt_for(24, m.config.vocab_size, 4);
  std::mt19937 rng(7);
  for (const auto& [copy_us, compute_us] : {std::pair{0, 0}, std::pair{2000, 0}, std::pair{0, 2000}}) {
    auto be = gpu(copy_us, compute_us);
    for (int kind : {1, 0, 2}) {
      ExecutorOptions eo;
      eo.capacity = 48;
      eo.max_chunk = 24;
      eo.schedule = random_schedule(m.config, eo.kv_dtype, 8, rng, kind);
      EXPECT_EQ(offload_test::greedy_ids(*be, m, eo, prompt, 12, true),
                offload_test::greedy_ids(*be, m, eo, prompt, 12, false))
          << "schedule kind " << kind << ", delays " << copy_us << "/" << compute_us << " us";
    }
  }
}

// Every argmax_to starts late: the backend's compute delay follows a wait on the
// compute stream (for an event never recorded, so it waits for nothing else).
class SlowArgmax final : public ForwardingBackend {
 public:
  explicit SlowArgmax(Backend& inner) : ForwardingBackend(inner), never_(inner.create_event()) {}
  ~SlowArgmax() override { inner_.destroy_event(never_); }
  void argmax_to(const float* x, int64_t n, int32_t* dst) override {
    inner_.wait(Stream::Compute, never_);
    inner_.argmax_to(x, n, dst);
  }

 private:
  Event never_;
};

// The control: with the argmax late and the id's copy to the host not waiting for it
// (all slabs resident, so the D2H stream carries nothing else), the host reads the
// slot before the id is in it.
TEST(CudaOffloadExact, GreedyIdCopiedBeforeItsArgmaxIsNoticed) {
  HI_REQUIRE_GPU();
  const LoadedModel m = load_model("synthetic:tiny-gqa");
  const auto prompt = prompt_for(24, m.config.vocab_size, 4);
  auto be = gpu(0, 2000);
  SlowArgmax slow(*be);
  ExecutorOptions eo;
  eo.capacity = 48;
  eo.max_chunk = 24;
  const auto want = offload_test::greedy_ids(*be, m, eo, prompt, 12, false);
  EXPECT_EQ(offload_test::greedy_ids(slow, m, eo, prompt, 12, true), want);
  DropWaits broken(slow, Stream::D2H);
  EXPECT_NE(offload_test::greedy_ids(broken, m, eo, prompt, 12, true), want)
      << "the id copied back before its step's argmax went unnoticed";
}

// ---- Llama-3-8B shapes (4 layers, BF16) at 32K.

TEST(CudaOffloadExact, Llama3ShapedFourLayersAt32K) {
  HI_REQUIRE_GPU();
  const LoadedModel m = load_model("synthetic:llama-3-8b,layers=4");
  const ModelConfig& c = m.config;
  auto be = gpu();
  const int n_prompt = 32768 - 700;  // the last block is partly filled
  const auto prompt = prompt_for(n_prompt, c.vocab_size, 32);
  RunSpec ref;
  ref.chunk = 8192;
  ref.kv_dtype = DType::BF16;
  ref.schedule = KvSchedule::all_resident(c, DType::BF16);
  ASSERT_EQ(ref.schedule.block_tokens, 8192);
  const int64_t head_block = 2 * 8192 * static_cast<int64_t>(kv_row_bytes(c, DType::BF16));
  const auto want = run(*be, m, prompt, 4, ref);

  RunSpec all = ref;  // every slab offloaded, as a plan at this context would stream them
  for (Home& h : all.schedule.homes) h = Home::Host;
  for (int& g : all.schedule.group_heads) g = 2;
  all.schedule.n_buffers = 3;
  all.schedule.buffer_bytes = c.n_kv_heads * head_block;
  TransferStats st;
  std::string where;
  EXPECT_TRUE(same_bits(want, run(*be, m, prompt, 4, all, &st), &where)) << "offload all: " << where;
  EXPECT_GT(st.h2d_bytes, 0);

  // Half the pool pageable (what a tight budget at millions of tokens plans): copies
  // from and into pageable chunks are staged by the driver, the bits stay.
  RunSpec half = all;
  half.schedule.pinned_limit = 2 * c.n_layers * c.n_kv_heads * head_block;  // 2 of the 4 blocks
  EXPECT_TRUE(same_bits(want, run(*be, m, prompt, 4, half), &where)) << "half pageable: " << where;

  std::mt19937 rng(8);
  RunSpec mixed = ref;  // a random subset, random groups, two buffers of one head-block
  mixed.schedule = random_schedule(c, DType::BF16, 8192, rng, 2);
  for (int& g : mixed.schedule.group_heads) g = 1 + static_cast<int>(rng() % 3);
  mixed.schedule.n_buffers = 2;
  mixed.schedule.buffer_bytes = 3 * head_block;
  EXPECT_TRUE(same_bits(want, run(*be, m, prompt, 4, mixed), &where))
      << "offloaded " << mixed.schedule.offloaded_slabs() << " slabs: " << where;
  EXPECT_EQ(pinned_live(*be), 0);
}

// ---- The budget.

PlanInputs llama_inputs(const LoadedModel& m, Backend& be, int64_t context, int64_t budget, OffloadMode mode) {
  const DeviceMemoryInfo mem = be.device_memory();
  PlanInputs in;
  in.model_name = m.spec;
  in.cfg = m.config;
  in.kv_dtype = DType::BF16;
  in.context = context;
  in.gpu_budget = budget;
  in.mode = mode;
  in.weight_bytes = prepared_weight_bytes(m.weights);
  in.device_overhead = mem.driver_total - mem.driver_free;  // as the CLI measures it
  in.chunk = 8192;
  return in;
}

std::vector<float> run_plan(Backend& be, const LoadedModel& m, const Plan& p, int n_prompt, int decode) {
  RunSpec s;
  s.chunk = p.chunk;
  s.mlp_chunk = p.mlp_chunk;
  s.kv_dtype = p.in.kv_dtype;
  s.schedule = p.schedule;
  return run(be, m, prompt_for(n_prompt, m.config.vocab_size, 5), decode, s).back();
}

TEST(CudaOffloadBudget, DriverPeakStaysUnderTheBudgetAndAccountingMatchesThePlan) {
  HI_REQUIRE_GPU();
  const LoadedModel m = load_model("synthetic:llama-3-8b,layers=4");
  auto be = gpu();
  const int64_t context = 32768;
  const Plan res = make_plan(llama_inputs(m, *be, context, -1, OffloadMode::None));
  const Plan off = make_plan(llama_inputs(m, *be, context, -1, OffloadMode::All));
  const int64_t budget = (res.gpu_total + off.gpu_total) / 2;
  const Plan p = make_plan(llama_inputs(m, *be, context, budget, OffloadMode::Auto));
  ASSERT_GT(p.resident_slabs, 0);
  ASSERT_GT(p.offloaded_slabs, 0);
  be->set_device_limit(budget - p.in.device_overhead);
  be->reset_device_peak();
  const auto got = run_plan(*be, m, p, static_cast<int>(context) - 4, 4);  // fills the planned context
  const DeviceMemoryInfo mem = be->device_memory();
  std::printf("budget %s: plan %lld resident + %lld offloaded slabs, predicted %s (overhead %s); accounted peak %s, "
              "driver peak %s (driver - predicted: %lld MiB)\n",
              format_bytes(budget).c_str(), static_cast<long long>(p.resident_slabs),
              static_cast<long long>(p.offloaded_slabs), format_bytes(p.gpu_total).c_str(),
              format_bytes(p.in.device_overhead).c_str(), format_bytes(mem.peak).c_str(),
              format_bytes(mem.driver_peak_used).c_str(),
              static_cast<long long>((mem.driver_peak_used - p.gpu_total) >> 20));
  EXPECT_EQ(mem.peak, p.gpu_total - p.in.device_overhead - p.host_map)
      << "the plan predicts the engine's allocations exactly";
  EXPECT_LE(mem.driver_peak_used, budget) << "the driver saw more than --gpu-memory";
  EXPECT_EQ(mem.in_use, 0);
  // Same bits as everything resident (same chunk and block size), without a limit.
  be->set_device_limit(-1);
  Plan all_res = p;
  for (Home& h : all_res.schedule.homes) h = Home::Device;
  EXPECT_EQ(0, std::memcmp(got.data(), run_plan(*be, m, all_res, static_cast<int>(context) - 4, 4).data(),
                           got.size() * sizeof(float)));
}

TEST(CudaOffloadBudget, AllocationsPastTheLimitFailNamingGpuMemory) {
  HI_REQUIRE_GPU();
  const LoadedModel m = load_model("synthetic:tiny-gqa");
  auto be = gpu();
  void* a = be->alloc(1 << 20);  // counts as a whole 2 MiB page
  EXPECT_EQ(be->device_memory().in_use, int64_t{2} << 20);
  be->set_device_limit(int64_t{4} << 20);
  try {
    be->alloc(int64_t{3} << 20);
    FAIL() << "expected the budget to refuse";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--gpu-memory: device budget exceeded"), std::string::npos) << e.what();
  }
  void* b = be->alloc(int64_t{2} << 20);  // exactly up to the limit
  EXPECT_EQ(be->device_memory().in_use, int64_t{4} << 20);
  be->free(a);
  be->free(b);
  // Weights count too: a limit below them refuses the executor, which gives back what it took.
  be->set_device_limit(prepared_weight_bytes(m.weights) / 2);
  ExecutorOptions eo;
  eo.capacity = 64;
  EXPECT_THROW({ Executor exec(*be, m, eo); }, Error);
  EXPECT_EQ(be->device_memory().in_use, 0);
  const DeviceMemoryInfo mem = be->device_memory();
  EXPECT_GT(mem.driver_total, 0);
  EXPECT_GE(mem.driver_peak_used, mem.driver_total - mem.driver_free);
}

// Several requests in one process: the host pool is pinned once, reused, and given
// back with its executor.
TEST(CudaOffloadBudget, PinnedPoolIsReusedAcrossRequestsAndNotLeaked) {
  HI_REQUIRE_GPU();
  const LoadedModel m = load_model("synthetic:tiny-mqa");
  auto be = gpu();
  RunSpec s;
  s.schedule = KvSchedule::all_resident(m.config, DType::F32);
  s.schedule.block_tokens = 8;
  for (Home& h : s.schedule.homes) h = Home::Host;
  s.schedule.buffer_bytes = 2 * 8 * static_cast<int64_t>(kv_row_bytes(m.config, DType::F32)) * m.config.n_kv_heads;
  ExecutorOptions eo;
  eo.max_chunk = 16;
  eo.capacity = 64;
  eo.schedule = s.schedule;
  const auto prompt = prompt_for(60, m.config.vocab_size, 9);
  {
    Executor exec(*be, m, eo);
    const int64_t pinned = pinned_live(*be);
#ifdef HEADINFER_HAVE_CUDA
    EXPECT_GT(pinned, 0);
#endif
    std::vector<float> first;
    for (int request = 0; request < 4; ++request) {
      exec.reset();
      const std::vector<float>* logits = nullptr;
      for (int i = 0; i < 60; i += 16) logits = &exec.forward(prompt.data() + i, std::min(16, 60 - i));
      if (request == 0) first = *logits;
      EXPECT_EQ(0, std::memcmp(first.data(), logits->data(), first.size() * sizeof(float))) << "request " << request;
      EXPECT_EQ(pinned_live(*be), pinned) << "request " << request << " pinned more host memory";
    }
  }
  EXPECT_EQ(pinned_live(*be), 0);
}

// Pinning fails (injected: the driver's refusal past HEADINFER_PINNED_LIMIT bytes):
// the executor's construction ends in one clear Error, nothing stays pinned, and the
// same backend then serves a request.
TEST(CudaOffloadBudget, PinnedAllocationFailureIsACleanError) {
  HI_REQUIRE_GPU();
  const LoadedModel m = load_model("synthetic:tiny-mqa");
  setenv("HEADINFER_PINNED_LIMIT", "4KiB", 1);
  auto be = gpu();
  unsetenv("HEADINFER_PINNED_LIMIT");
  ExecutorOptions eo;
  eo.max_chunk = 16;
  eo.capacity = 4096;
  eo.schedule = KvSchedule::all_resident(m.config, DType::F32);
  eo.schedule.block_tokens = 64;
  for (Home& h : eo.schedule.homes) h = Home::Host;
  eo.schedule.buffer_bytes = 2 * 64 * static_cast<int64_t>(kv_row_bytes(m.config, DType::F32)) * m.config.n_kv_heads;
  try {
    Executor exec(*be, m, eo);
    ADD_FAILURE() << "an executor whose host pool cannot be pinned was made";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot pin"), std::string::npos) << e.what();
  }
  EXPECT_EQ(pinned_live(*be), 0);
  eo.schedule = KvSchedule::all_resident(m.config, DType::F32);
  Executor exec(*be, m, eo);
  const auto prompt = prompt_for(20, m.config.vocab_size, 3);
  EXPECT_EQ(exec.forward(prompt.data(), 16).size(), static_cast<size_t>(m.config.vocab_size));
}

// Large host blocks are mapped in huge pages and registered rather than allocated by
// the driver: they must behave the same under async copies, and go back when freed.
TEST(CudaStreams, LargePinnedBlocksCopyBothWays) {
  HI_REQUIRE_GPU();
  auto be = gpu();
  const size_t n = size_t{96} << 20;
  auto* h = static_cast<uint8_t*>(be->alloc_host(n));
  auto* back = static_cast<uint8_t*>(be->alloc_host(n));
  auto* d = static_cast<uint8_t*>(be->alloc(n));
  for (size_t i = 0; i < n; i += 4093) h[i] = static_cast<uint8_t>(i * 13 + 5);
  be->copy_h2d_async(d, h, n);
  Event up = be->create_event();
  be->record(up, Stream::H2D);
  be->wait(Stream::D2H, up);
  be->copy_d2h_async(back, d, n);
  be->synchronize();
  EXPECT_EQ(0, std::memcmp(h, back, n));
  be->destroy_event(up);
  be->free(d);
  be->free_host(h);
  be->free_host(back);
  EXPECT_EQ(pinned_live(*be), 0);
}

// Copies from pageable host memory go through the backend's pinned staging slots:
// a flat copy longer than all the slots together (the slots are reused), a 2-D copy
// of strided rows, and host memory that a D2H copy wrote read back up by the H2D
// stream behind an event (the KV appends' path).
TEST(CudaStreams, PageableSourcesAreStagedExactly) {
  HI_REQUIRE_GPU();
  // The staging is the default; set anyway, so the test holds whatever the default is
  // (the streams read the switch when the backend is made).
  setenv("HEADINFER_CUDA_STAGED_PAGEABLE", "1", 1);
  auto be = gpu(300, 0);  // copies start late
  unsetenv("HEADINFER_CUDA_STAGED_PAGEABLE");
  const size_t n = size_t{40} << 20;  // > 4 slots of 8 MiB
  std::vector<uint8_t> h(n), back(n, 0);
  for (size_t i = 0; i < n; ++i) h[i] = static_cast<uint8_t>((i * 2654435761u) >> 13);
  auto* d = static_cast<uint8_t*>(be->alloc(n));
  be->copy_h2d_async(d, h.data(), n);
  Event up = be->create_event();
  be->record(up, Stream::H2D);
  be->wait(Stream::D2H, up);
  be->copy_d2h_async(back.data(), d, n);
  be->synchronize();
  EXPECT_EQ(0, std::memcmp(h.data(), back.data(), n));
  // 2-D: 3000 rows of 5000 bytes at pitch 6000 (pageable host) -> pitch 5120 (device),
  // more rows than one slot holds.
  const size_t rows = 3000, width = 5000;
  std::fill(back.begin(), back.end(), 0);
  be->copy_h2d_2d_async(d, 5120, h.data(), 6000, width, rows);
  be->record(up, Stream::H2D);
  be->wait(Stream::D2H, up);
  be->copy_d2h_2d_async(back.data(), 6000, d, 5120, width, rows);
  be->synchronize();
  for (size_t r = 0; r < rows; ++r)
    ASSERT_EQ(0, std::memcmp(back.data() + r * 6000, h.data() + r * 6000, width)) << "row " << r;
  // Device -> pageable host on the D2H stream, then back up from that host memory on
  // the H2D stream behind an event: the staged copy must read what the D2H wrote.
  std::vector<uint8_t> mid(size_t{1} << 20, 0), out(size_t{1} << 20, 0);
  auto* d2 = static_cast<uint8_t*>(be->alloc(mid.size()));
  be->copy_h2d_async(d, h.data(), mid.size());
  be->record(up, Stream::H2D);
  be->wait(Stream::D2H, up);
  be->copy_d2h_async(mid.data(), d, mid.size());
  Event down = be->create_event();
  be->record(down, Stream::D2H);
  be->wait(Stream::H2D, down);
  be->copy_h2d_async(d2, mid.data(), mid.size());
  be->synchronize();
  be->download(out.data(), d2, out.size());
  EXPECT_EQ(0, std::memcmp(h.data(), out.data(), out.size()));
  be->destroy_event(up);
  be->destroy_event(down);
  be->free(d2);
  be->free(d);
}

// Events and copies: a wait on an event never recorded is no wait; 2-D copies move
// strided rows both ways.
TEST(CudaStreams, EventsOrderCopiesAndTwoDimensionalCopiesKeepPitches) {
  HI_REQUIRE_GPU();
  auto be = gpu(500, 0);  // copies start late: only the events make this pass
  const size_t n = 1 << 16;
  auto* h = static_cast<uint8_t*>(be->alloc_host(n));
  auto* back = static_cast<uint8_t*>(be->alloc_host(n));
  auto* d = static_cast<uint8_t*>(be->alloc(n));
  for (size_t i = 0; i < n; ++i) h[i] = static_cast<uint8_t>(i * 7 + 1);
  std::memset(back, 0, n);
  Event never = be->create_event(), up = be->create_event(), down = be->create_event();
  be->wait(Stream::H2D, never);  // never recorded: no wait
  be->copy_h2d_async(d, h, n);
  be->record(up, Stream::H2D);
  be->wait(Stream::D2H, up);
  be->copy_d2h_async(back, d, n);
  be->record(down, Stream::D2H);
  be->sync(down);
  EXPECT_EQ(0, std::memcmp(h, back, n));
  // 2-D: 8 rows of 100 bytes at pitch 256 (host) -> pitch 128 (device) -> pitch 300 (host).
  std::memset(back, 0, n);
  be->copy_h2d_2d_async(d, 128, h, 256, 100, 8);
  be->record(up, Stream::H2D);
  be->wait(Stream::D2H, up);
  be->copy_d2h_2d_async(back, 300, d, 128, 100, 8);
  be->record(down, Stream::D2H);
  be->synchronize();
  for (int r = 0; r < 8; ++r) {
    EXPECT_EQ(0, std::memcmp(back + r * 300, h + r * 256, 100)) << "row " << r;
    EXPECT_EQ(back[r * 300 + 100], 0) << "row " << r << " wrote past its width";
  }
  for (Event e : {never, up, down}) be->destroy_event(e);
  be->free(d);
  be->free_host(h);
  be->free_host(back);
  EXPECT_EQ(pinned_live(*be), 0);
}

}  // namespace
}  // namespace headinfer
