// Invariant 1: offloading changes no bit. For random schedules (every slab on the
// host, none, random subsets; group sizes 1..all; buffer counts and sizes that
// force streaming in token blocks; host pools grown a block at a time) the logits
// after a chunked prefill and after every decode step equal the all-resident run's
// bit for bit. Copies run late on the CPU backend's copy threads, so a missing
// event wait in the schedule shows up here as different bits.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "backend/backend.hpp"
#include "format/model_loader.hpp"
#include "runtime/executor.hpp"
#include "offload_runs.hpp"

namespace headinfer {
namespace {

using offload_test::prompt_for;
using offload_test::random_schedule;
using offload_test::run;
using offload_test::RunSpec;

void expect_same_bits(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b,
                      const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].size(), b[i].size());
    EXPECT_EQ(0, std::memcmp(a[i].data(), b[i].data(), a[i].size() * sizeof(float)))
        << what << ": logits differ at step " << i;
  }
}

class OffloadExact : public ::testing::TestWithParam<const char*> {};

TEST_P(OffloadExact, RandomSchedulesMatchAllResidentBitForBit) {
  const LoadedModel m = load_model(std::string("synthetic:") + GetParam());
  CpuBackendOptions bo;
  bo.n_threads = 2;
  bo.copy_delay_us = 30;
  auto be = make_cpu_backend(bo);
  std::mt19937 rng(std::hash<std::string>{}(GetParam()));
  const struct {
    int prompt, chunk, decode;
    int64_t block;
    DType kv;
  } cases[] = {
      {37, 16, 4, 8, DType::F32},  {50, 7, 3, 4, DType::BF16}, {64, 64, 5, 16, DType::F32},
      {29, 1, 2, 8, DType::F16},   {45, 32, 4, 5, DType::F32},  {40, 10, 3, 64, DType::BF16},
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
      what << GetParam() << " prompt " << c.prompt << " chunk " << c.chunk << " block " << c.block << " kind " << kind
           << " offloaded " << s.schedule.offloaded_slabs() << " buffers " << s.schedule.n_buffers << "x"
           << s.schedule.buffer_bytes;
      expect_same_bits(want, got, what.str());
      if (s.schedule.offloaded_slabs() > 0) EXPECT_GT(st.h2d_bytes, 0) << what.str();
      if (s.schedule.offloaded_slabs() == 0) EXPECT_EQ(st.h2d_bytes + st.d2h_bytes, 0) << what.str();
      ++n_runs;
    }
  }
  EXPECT_EQ(n_runs, 24);
}

INSTANTIATE_TEST_SUITE_P(Models, OffloadExact, ::testing::Values("tiny-mha", "tiny-gqa", "tiny-mqa"));

// Decode moves every offloaded slab's earlier tokens to the device once per step
// and sends only the new token's rows back.
TEST(OffloadTraffic, DecodeMovesOffloadedSlabsAndAppendsOneRow) {
  const LoadedModel m = load_model("synthetic:tiny-gqa");
  const ModelConfig& c = m.config;
  auto be = make_cpu_backend(2);
  RunSpec s;
  s.chunk = 16;
  s.schedule = KvSchedule::all_resident(c, DType::F32);
  s.schedule.block_tokens = 8;
  for (Home& h : s.schedule.homes) h = Home::Host;
  s.schedule.buffer_bytes = 2 * 8 * static_cast<int64_t>(kv_row_bytes(c, DType::F32)) * c.n_kv_heads;
  ExecutorOptions eo;
  eo.max_chunk = s.chunk;
  eo.capacity = 64;
  eo.schedule = s.schedule;
  Executor exec(*be, m, eo);
  const auto prompt = prompt_for(40, c.vocab_size, 7);
  for (int i = 0; i < 40; i += 16) exec.forward(prompt.data() + i, std::min(16, 40 - i));
  const TransferStats before = exec.transfer_stats();
  const int32_t id = 5;
  exec.forward(&id, 1);
  const TransferStats after = exec.transfer_stats();
  const int64_t row = static_cast<int64_t>(kv_row_bytes(c, DType::F32));
  const int64_t slabs = int64_t{c.n_layers} * c.n_kv_heads;
  EXPECT_EQ(after.h2d_bytes - before.h2d_bytes, slabs * 2 * 40 * row);
  EXPECT_EQ(after.d2h_bytes - before.d2h_bytes, slabs * 2 * 1 * row);
}

}  // namespace
}  // namespace headinfer
