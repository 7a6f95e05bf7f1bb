// Greedy decoding on the backend: Backend::argmax (the default reads the values
// back) takes the first maximum as the host sampler does, and Executor::forward_greedy
// gives the id argmax(forward(...)) gives, step after step.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "backend/backend.hpp"
#include "format/model_loader.hpp"
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

}  // namespace
}  // namespace headinfer
