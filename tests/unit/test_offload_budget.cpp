// The emulated device arena keeps the planner honest: a plan's prediction is what
// the engine allocates, the peak stays under --gpu-memory, a budget too small is
// refused (by the plan, in numbers, and by the arena past it), the host pool is
// kept across requests and nothing leaks. Also the CPU copy streams themselves.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <thread>

#include "backend/backend.hpp"
#include "format/model_loader.hpp"
#include "headinfer/error.hpp"
#include "kv/plan.hpp"
#include "runtime/executor.hpp"

namespace headinfer {
namespace {

PlanInputs tiny_inputs(const LoadedModel& m, int64_t context, int64_t budget, OffloadMode mode) {
  PlanInputs in;
  in.model_name = m.spec;
  in.cfg = m.config;
  in.kv_dtype = DType::F32;
  in.context = context;
  in.gpu_budget = budget;
  in.mode = mode;
  in.weight_bytes = prepared_weight_bytes(m.weights);
  in.speeds = DeviceSpeeds::for_backend("cpu");
  in.chunk = 32;
  in.min_copy_bytes = 2048;  // small blocks, so a short context spans many
  return in;
}

std::vector<int32_t> prompt_for(int n, int vocab) {
  std::mt19937 rng(11);
  std::uniform_int_distribution<int32_t> d(3, vocab - 1);
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& x : ids) x = d(rng);
  return ids;
}

// Runs prompt + decode under a plan; returns the last logits.
std::vector<float> run_plan(Backend& be, const LoadedModel& m, const Plan& p, int n_prompt, int decode) {
  ExecutorOptions eo;
  eo.max_chunk = p.chunk;
  eo.mlp_chunk = p.mlp_chunk;
  eo.capacity = p.in.context;
  eo.kv_dtype = p.in.kv_dtype;
  eo.schedule = p.schedule;
  Executor exec(be, m, eo);
  const auto prompt = prompt_for(n_prompt, m.config.vocab_size);
  const std::vector<float>* logits = nullptr;
  for (int i = 0; i < n_prompt; i += p.chunk) logits = &exec.forward(prompt.data() + i, std::min(p.chunk, n_prompt - i));
  for (int s = 0; s < decode; ++s) {
    const int32_t id = static_cast<int32_t>(std::max_element(logits->begin(), logits->end()) - logits->begin());
    logits = &exec.forward(&id, 1);
  }
  return *logits;
}

TEST(OffloadBudget, PeakStaysUnderBudgetAndMatchesThePrediction) {
  const LoadedModel m = load_model("synthetic:tiny-gqa");
  const int64_t context = 400;
  // A budget that holds the weights, the buffers and about half the slabs.
  const Plan all_res = make_plan(tiny_inputs(m, context, -1, OffloadMode::None));
  const Plan all_off = make_plan(tiny_inputs(m, context, -1, OffloadMode::All));
  const int64_t budget = (all_res.gpu_total + all_off.gpu_total) / 2;
  const Plan p = make_plan(tiny_inputs(m, context, budget, OffloadMode::Auto));
  ASSERT_GT(p.resident_slabs, 0);
  ASSERT_GT(p.offloaded_slabs, 0);
  CpuBackendOptions bo;
  bo.n_threads = 2;
  bo.device_limit = budget;
  auto be = make_cpu_backend(bo);
  const auto got = run_plan(*be, m, p, 300, 5);
  const DeviceMemoryInfo mem = be->device_memory();
  EXPECT_LE(mem.peak, budget);
  EXPECT_EQ(mem.peak, p.gpu_total) << "the plan predicts the engine's allocations exactly on the CPU arena";
  EXPECT_EQ(mem.in_use, 0) << "everything is given back";
  // Same bits as everything resident (the same chunk and block size).
  auto be2 = make_cpu_backend(2);
  Plan res = p;
  for (Home& h : res.schedule.homes) h = Home::Device;
  EXPECT_EQ(0, std::memcmp(got.data(), run_plan(*be2, m, res, 300, 5).data(), got.size() * sizeof(float)));
}

TEST(OffloadBudget, TooSmallBudgetIsRefusedBeforeAllocating) {
  const LoadedModel m = load_model("synthetic:tiny-gqa");
  const Plan all_off = make_plan(tiny_inputs(m, 400, -1, OffloadMode::All));
  try {
    make_plan(tiny_inputs(m, 400, all_off.gpu_total - all_off.gpu.buffers, OffloadMode::Auto));
    FAIL() << "expected a refusal";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--gpu-memory"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("smallest plan"), std::string::npos) << e.what();
  }
  // Past the plan, the arena itself refuses: everything resident under a budget
  // that only holds the offloaded plan.
  CpuBackendOptions bo;
  bo.device_limit = all_off.gpu_total;
  auto be = make_cpu_backend(bo);
  Plan res = all_off;
  for (Home& h : res.schedule.homes) h = Home::Device;
  try {
    run_plan(*be, m, res, 8, 0);
    FAIL() << "expected the arena to refuse";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--gpu-memory: device budget exceeded"), std::string::npos) << e.what();
  }
  EXPECT_EQ(be->device_memory().in_use, 0) << "a failed construction gives back what it took";
}

TEST(OffloadBudget, HostPoolIsKeptAcrossRequestsAndGrowsInChunks) {
  const LoadedModel m = load_model("synthetic:tiny-mqa");
  Plan p = make_plan(tiny_inputs(m, 64, -1, OffloadMode::All));
  p.schedule.host_chunk_bytes = 0;  // one block per chunk: growth is visible
  auto be = make_cpu_backend(2);
  ExecutorOptions eo;
  eo.max_chunk = p.chunk;
  eo.capacity = 64;
  eo.schedule = p.schedule;
  Executor exec(*be, m, eo);
  const size_t host0 = exec.kv().host_bytes();
  const auto prompt = prompt_for(60, m.config.vocab_size);
  std::vector<float> first;
  for (int request = 0; request < 3; ++request) {
    exec.reset();
    const std::vector<float>* logits = nullptr;
    for (int i = 0; i < 60; i += p.chunk) logits = &exec.forward(prompt.data() + i, std::min(p.chunk, 60 - i));
    if (request == 0) first = *logits;
    EXPECT_EQ(0, std::memcmp(first.data(), logits->data(), first.size() * sizeof(float))) << "request " << request;
    EXPECT_EQ(exec.kv().host_bytes(), host0) << "the pool is reused, not reallocated";
  }
  exec.reserve(64 + 4 * p.schedule.block_tokens);
  EXPECT_EQ(exec.kv().host_bytes(), host0 * (64 / p.schedule.block_tokens + 4) / (64 / p.schedule.block_tokens));
}

TEST(OffloadBudget, PinnedLimitLeavesLaterChunksPageableAndTheSameBits) {
  const LoadedModel m = load_model("synthetic:tiny-mqa");
  Plan p = make_plan(tiny_inputs(m, 64, -1, OffloadMode::All));
  p.schedule.host_chunk_bytes = 0;  // one block per chunk
  auto be = make_cpu_backend(2);
  const auto prompt = prompt_for(60, m.config.vocab_size);
  auto run = [&](int64_t pinned_limit, size_t* pinned, size_t* total) {
    ExecutorOptions eo;
    eo.max_chunk = p.chunk;
    eo.capacity = 64;
    eo.schedule = p.schedule;
    eo.schedule.pinned_limit = pinned_limit;
    Executor exec(*be, m, eo);
    *pinned = exec.kv().host_pinned_bytes();
    *total = exec.kv().host_bytes();
    std::vector<float> logits;
    for (int i = 0; i < 60; i += p.chunk) logits = exec.forward(prompt.data() + i, std::min(p.chunk, 60 - i));
    return logits;
  };
  size_t pinned_all = 0, total_all = 0, pinned = 0, total = 0;
  const auto want = run(-1, &pinned_all, &total_all);
  EXPECT_EQ(pinned_all, total_all);
  const size_t chunk = total_all / static_cast<size_t>(64 / p.schedule.block_tokens);
  // One and a half chunks allowed: one chunk pinned, the rest pageable.
  const auto got = run(static_cast<int64_t>(chunk + chunk / 2), &pinned, &total);
  EXPECT_EQ(total, total_all);
  EXPECT_EQ(pinned, chunk);
  ASSERT_EQ(want.size(), got.size());
  EXPECT_EQ(0, std::memcmp(want.data(), got.data(), want.size() * sizeof(float)));
  run(0, &pinned, &total);
  EXPECT_EQ(pinned, 0u) << "a limit of 0 pins nothing";
}

TEST(CpuStreams, CopiesRunLaterAndEventsOrderThem) {
  CpuBackendOptions bo;
  bo.copy_delay_us = 20000;
  auto be = make_cpu_backend(bo);
  std::vector<uint8_t> host(1 << 16, 7);
  auto* h = static_cast<uint8_t*>(be->alloc_host(host.size()));
  auto* back = static_cast<uint8_t*>(be->alloc_host(host.size()));
  auto* d = static_cast<uint8_t*>(be->alloc(host.size()));
  std::memcpy(h, host.data(), host.size());
  std::memset(d, 0, host.size());
  std::memset(back, 0, host.size());
  Event up = be->create_event(), down = be->create_event();
  be->copy_h2d_async(d, h, host.size());
  be->record(up, Stream::H2D);
  EXPECT_EQ(d[0], 0) << "the copy has not run yet: it is on the copy thread";
  be->wait(Stream::D2H, up);  // the D2H copy must see the H2D result
  be->copy_d2h_async(back, d, host.size());
  be->record(down, Stream::D2H);
  be->sync(down);
  EXPECT_EQ(d[0], 7);
  EXPECT_EQ(back[host.size() - 1], 7);
  // 2-D copies: 3 rows of 4 bytes with pitches 16 and 8.
  std::memset(back, 0, 64);
  for (int i = 0; i < 64; ++i) d[i] = static_cast<uint8_t>(i);
  be->copy_d2h_2d_async(back, 8, d, 16, 4, 3);
  be->record(down, Stream::D2H);
  be->sync(down);
  EXPECT_EQ(back[8], 16);
  EXPECT_EQ(back[19], 35);
  EXPECT_EQ(back[4], 0);
  be->destroy_event(up);
  be->destroy_event(down);
  be->free(d);
  be->free_host(h);
  be->free_host(back);
  EXPECT_EQ(be->device_memory().in_use, 0);
}

}  // namespace
}  // namespace headinfer
