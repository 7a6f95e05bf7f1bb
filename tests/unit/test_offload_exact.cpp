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
#include "kv/kv_schedule.hpp"
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

// Decode runs in key splits of decode_split_tokens(capacity, block) (S): a resident
// head in one call, an offloaded one per fill. Steps that cross a split boundary
// inside a block (S < block), a block boundary, and a whole prompt fed one token at
// a time must still give the all-resident bits for any schedule.
TEST_P(OffloadExact, DecodeAcrossSplitAndBlockBoundaries) {
  const LoadedModel m = load_model(std::string("synthetic:") + GetParam());
  CpuBackendOptions bo;
  bo.n_threads = 2;
  bo.copy_delay_us = 30;
  auto be = make_cpu_backend(bo);
  std::mt19937 rng(std::hash<std::string>{}(GetParam()) + 1);
  const struct {
    int prompt, chunk, decode;
    int64_t block, split;  // split: what decode_split_tokens gives for this capacity and block
    DType kv;
  } cases[] = {
      {250, 64, 10, 512, 128, DType::F32},  // a split boundary (256) inside the first block
      {508, 64, 8, 512, 128, DType::BF16},  // the block boundary at 512
      {20, 8, 10, 12, 4, DType::F32},       // splits of 4 in blocks of 12: 24 and 28 crossed
      {13, 1, 6, 6, 2, DType::F16},         // every token a decode step, from the first one
  };
  for (const auto& c : cases) {
    ASSERT_EQ(decode_split_tokens(c.prompt + c.decode, c.block), c.split);
    const auto prompt = prompt_for(c.prompt, m.config.vocab_size, static_cast<unsigned>(c.prompt) + 5);
    RunSpec ref;
    ref.chunk = c.chunk;
    ref.kv_dtype = c.kv;
    ref.schedule = KvSchedule::all_resident(m.config, c.kv);
    ref.schedule.block_tokens = c.block;
    const auto want = run(*be, m, prompt, c.decode, ref);
    for (int kind = 0; kind < 4; ++kind) {
      RunSpec s = ref;
      s.schedule = random_schedule(m.config, c.kv, c.block, rng, kind);
      const auto got = run(*be, m, prompt, c.decode, s);
      std::ostringstream what;
      what << GetParam() << " prompt " << c.prompt << " decode " << c.decode << " block " << c.block << " kind "
           << kind << " offloaded " << s.schedule.offloaded_slabs() << " buffers " << s.schedule.n_buffers << "x"
           << s.schedule.buffer_bytes;
      expect_same_bits(want, got, what.str());
    }
  }
}

// The decode path's result is the chunked path's up to rounding: the same context
// fed as one last chunk of 2 tokens or as a decode step of 1 gives close logits.
TEST_P(OffloadExact, DecodeStepAgreesWithAChunk) {
  const LoadedModel m = load_model(std::string("synthetic:") + GetParam());
  auto be = make_cpu_backend(2);
  const auto prompt = prompt_for(300, m.config.vocab_size, 17);
  RunSpec s;
  s.chunk = 2;  // the last forward is a chunk of 2 (chunked) ...
  s.schedule = KvSchedule::all_resident(m.config, DType::F32);
  s.schedule.block_tokens = 64;
  ExecutorOptions eo;
  eo.max_chunk = 64;
  eo.capacity = 301;
  eo.schedule = s.schedule;
  Executor chunked(*be, m, eo), stepped(*be, m, eo);
  for (int i = 0; i < 298; i += 64) {
    const int n = std::min(64, 298 - i);
    chunked.forward(prompt.data() + i, n);
    stepped.forward(prompt.data() + i, n);
  }
  const std::vector<float> a = chunked.forward(prompt.data() + 298, 2);
  stepped.forward(prompt.data() + 298, 1);  // ... or two decode steps
  const std::vector<float> b = stepped.forward(prompt.data() + 299, 1);
  ASSERT_EQ(a.size(), b.size());
  float max_abs = 0.f;
  for (float x : a) max_abs = std::max(max_abs, std::abs(x));
  for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], 1e-4f * std::max(1.f, max_abs)) << "logit " << i;
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
