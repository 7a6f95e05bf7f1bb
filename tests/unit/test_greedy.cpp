// Greedy decoding on the backend: Backend::argmax (the default reads the values
// back) takes the first maximum as the host sampler does, Executor::forward_greedy
// gives the id argmax(forward(...)) gives, step after step, and steps issued ahead of
// the host (issue_greedy / take_greedy / drop_greedy) give the lock-step ids, over
// resident and offloaded slabs, with copies that lag.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "backend/backend.hpp"
#include "format/model_loader.hpp"
#include "headinfer/error.hpp"
#include "offload_runs.hpp"
#include "runtime/executor.hpp"
#include "runtime/sampler.hpp"

namespace headinfer {
namespace {

int32_t backend_argmax(Backend& be, const std::vector<float>& v) {
  float* d = static_cast<float*>(be.alloc(v.size() * sizeof(float)));
  be.upload(d, v.data(), v.size() * sizeof(float));
  const int32_t r = be.argmax(d, static_cast<int64_t>(v.size()));
  be.free(d);
  return r;
}

TEST(Greedy, BackendArgmaxTakesTheFirstMaximum) {
  auto cpu = make_cpu_backend(1);
  const float inf = INFINITY;
  for (const std::vector<float>& v : std::vector<std::vector<float>>{{0.f, 3.f, 1.f, 3.f},
                                                                     {-1.f},
                                                                     {-inf, -inf, -inf},
                                                                     {-inf, -2.f, 5.f, 5.f, -inf},
                                                                     {2.f, 1.f, 0.f}}) {
    EXPECT_EQ(backend_argmax(*cpu, v), argmax(v));
  }
  EXPECT_EQ(backend_argmax(*cpu, {0.f, 3.f, 1.f, 3.f}), 1);
  EXPECT_EQ(backend_argmax(*cpu, {-inf, -inf}), 0);
}

TEST(Greedy, BackendArgmaxToLeavesTheIndexInBackendMemory) {
  auto cpu = make_cpu_backend(1);
  const std::vector<float> v{-1.f, 4.f, 2.f, 4.f, 0.f};
  float* d = static_cast<float*>(cpu->alloc(v.size() * sizeof(float)));
  auto* out = static_cast<int32_t*>(cpu->alloc(sizeof(int32_t)));
  cpu->upload(d, v.data(), v.size() * sizeof(float));
  cpu->argmax_to(d, static_cast<int64_t>(v.size()), out);
  int32_t got = -1;
  cpu->download(&got, out, sizeof got);
  EXPECT_EQ(got, 1);
  cpu->free(out);
  cpu->free(d);
}

TEST(Greedy, ForwardGreedyEqualsArgmaxOfTheLogits) {
  const LoadedModel m = load_model("synthetic:tiny-gqa");
  auto cpu = make_cpu_backend(2);
  ExecutorOptions eo;
  eo.capacity = 64;
  eo.max_chunk = 16;
  Executor a(*cpu, m, eo), b(*cpu, m, eo);
  std::vector<int32_t> prompt;
  for (int i = 0; i < 20; ++i) prompt.push_back(3 + (i * 7) % (m.config.vocab_size - 3));
  int32_t ta = 0, tb = 0;
  for (size_t i = 0; i < prompt.size(); i += 16) {
    const int n = static_cast<int>(std::min<size_t>(16, prompt.size() - i));
    ta = argmax(a.forward(prompt.data() + i, n));
    tb = b.forward_greedy(prompt.data() + i, n);
  }
  for (int s = 0; s < 10; ++s) {
    ASSERT_EQ(ta, tb) << "step " << s;
    ta = argmax(a.forward(&ta, 1));
    tb = b.forward_greedy(&tb, 1);
  }
  EXPECT_EQ(a.position(), b.position());
}

// Resident slabs, every slab on the host, and a mix, each with copies that sleep
// before they run: a slot read before its copy's event, or written while a copy still
// reads it, shows as a wrong id.
TEST(Greedy, StepsIssuedAheadGiveTheLockStepIds) {
  const LoadedModel m = load_model("synthetic:tiny-gqa");
  CpuBackendOptions co;
  co.n_threads = 2;
  co.copy_delay_us = 300;
  auto be = make_cpu_backend(co);
  const auto prompt = offload_test::prompt_for(12, m.config.vocab_size, 5);
  std::mt19937 rng(11);
  for (int kind : {1, 0, 2}) {
    ExecutorOptions eo;
    eo.capacity = 40;
    eo.max_chunk = 12;
    eo.schedule = offload_test::random_schedule(m.config, eo.kv_dtype, 8, rng, kind);
    const auto want = offload_test::greedy_ids(*be, m, eo, prompt, 16, false);
    const auto got = offload_test::greedy_ids(*be, m, eo, prompt, 16, true);
    EXPECT_EQ(got, want) << "schedule kind " << kind;
  }
}

// Dropped steps give their positions back: the forward after them sees the context
// as if they had never run, bit for bit.
TEST(Greedy, DroppedStepsLeaveNoTrace) {
  const LoadedModel m = load_model("synthetic:tiny-gqa");
  auto be = make_cpu_backend(2);
  ExecutorOptions eo;
  eo.capacity = 40;
  eo.max_chunk = 12;
  const auto prompt = offload_test::prompt_for(12, m.config.vocab_size, 6);
  Executor ref(*be, m, eo), e(*be, m, eo);
  const int32_t t0 = ref.forward_greedy(prompt.data(), 12);
  const int32_t t1 = ref.forward_greedy(&t0, 1);
  const std::vector<float> want = ref.forward(&t1, 1);

  ASSERT_EQ(e.forward_greedy(prompt.data(), 12), t0);
  e.issue_greedy(&t0);
  e.issue_greedy(nullptr);
  EXPECT_EQ(e.position(), 14);
  EXPECT_EQ(e.take_greedy(), t1);
  e.drop_greedy();  // the step after t1, not taken
  EXPECT_EQ(e.greedy_in_flight(), 0);
  EXPECT_EQ(e.position(), 13);
  const std::vector<float>& got = e.forward(&t1, 1);
  ASSERT_EQ(got.size(), want.size());
  EXPECT_EQ(0, std::memcmp(got.data(), want.data(), want.size() * sizeof(float)));

  // Two dropped: both positions back.
  e.issue_greedy(&t1);
  e.issue_greedy(nullptr);
  e.drop_greedy();
  EXPECT_EQ(e.position(), 14);
}

TEST(Greedy, StepsAheadRefuseWhatWouldCorruptThem) {
  const LoadedModel m = load_model("synthetic:tiny-gqa");
  auto be = make_cpu_backend(1);
  ExecutorOptions eo;
  eo.capacity = 20;
  eo.max_chunk = 1;  // the two id slots exist even for one-token chunks
  Executor e(*be, m, eo);
  const int32_t t = 5;
  EXPECT_THROW(e.issue_greedy(nullptr), Error);  // nothing to continue from
  EXPECT_THROW(e.take_greedy(), Error);
  const int32_t bad = m.config.vocab_size;
  EXPECT_THROW(e.issue_greedy(&bad), Error);
  EXPECT_EQ(e.position(), 0);
  e.issue_greedy(&t);
  EXPECT_THROW(e.issue_greedy(&t), Error);  // a host token behind a step in flight
  e.issue_greedy(nullptr);
  EXPECT_THROW(e.issue_greedy(nullptr), Error);  // three in flight
  EXPECT_THROW(e.forward(&t, 1), Error);
  const int32_t a = e.take_greedy();
  const int32_t b = e.take_greedy();
  Executor ref(*be, m, eo);
  EXPECT_EQ(ref.forward_greedy(&t, 1), a);
  EXPECT_EQ(ref.forward_greedy(&a, 1), b);
  e.issue_greedy(nullptr);  // continues from b, already taken
  EXPECT_EQ(e.take_greedy(), ref.forward_greedy(&b, 1));
  e.issue_greedy(nullptr);
  e.reset();  // drops it
  EXPECT_EQ(e.position(), 0);
  EXPECT_THROW(e.issue_greedy(nullptr), Error);
}

}  // namespace
}  // namespace headinfer
