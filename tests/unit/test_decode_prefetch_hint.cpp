// The decode step's prefetch hint (Backend::prefetch_after_next_matmul): before each
// layer's QKV projection, the earlier tokens' K and V of that layer's resident heads;
// nothing for offloaded heads, nothing for a prefill chunk, and no value changed.
#include <gtest/gtest.h>

#include <set>
#include <vector>

#include "format/model_loader.hpp"
#include "forwarding_backend.hpp"
#include "offload_runs.hpp"

namespace headinfer {
namespace {

// Records each hint and the rows of the matmul that follows it.
class HintRecorder final : public test::ForwardingBackend {
 public:
  using ForwardingBackend::ForwardingBackend;
  struct Hint {
    std::vector<ByteRange> ranges;
    int64_t next_matmul_rows = -1;
  };
  std::vector<Hint> hints;
  void prefetch_after_next_matmul(const ByteRange* r, int n) override {
    hints.push_back({std::vector<ByteRange>(r, r + n)});
    ForwardingBackend::prefetch_after_next_matmul(r, n);
  }
  void matmul(const float* x, int n, const Mat& w, const Mat* bias, float* out) override {
    if (!hints.empty() && hints.back().next_matmul_rows < 0) hints.back().next_matmul_rows = w.rows;
    ForwardingBackend::matmul(x, n, w, bias, out);
  }
};

TEST(DecodePrefetchHint, NamesEachLayersResidentKvBeforeItsQkvProjection) {
  const LoadedModel m = load_model("synthetic:tiny-gqa");
  const ModelConfig& c = m.config;
  ASSERT_GE(c.n_kv_heads, 2);
  const auto prompt = offload_test::prompt_for(40, c.vocab_size, 5);
  offload_test::RunSpec spec;
  spec.chunk = 16;
  spec.schedule = KvSchedule::all_resident(c, DType::F32);
  spec.schedule.block_tokens = 8;
  // Layer 0: every other head offloaded; the rest resident.
  int offloaded = 0;
  for (int h = 0; h < c.n_kv_heads; h += 2, ++offloaded) spec.schedule.homes[static_cast<size_t>(h)] = Home::Host;
  spec.schedule.buffer_bytes = 2 * 8 * static_cast<int64_t>(kv_row_bytes(c, DType::F32));

  auto cpu = make_cpu_backend(2);
  HintRecorder rec(*cpu);
  const int steps = 3;
  const auto hinted = offload_test::run(rec, m, prompt, steps, spec);
  EXPECT_EQ(hinted, offload_test::run(*cpu, m, prompt, steps, spec)) << "the hint changed a value";

  ASSERT_EQ(rec.hints.size(), static_cast<size_t>(steps * c.n_layers)) << "one per layer of each decode step only";
  const int64_t qkv_rows = int64_t{c.n_heads + 2 * c.n_kv_heads} * c.head_dim;
  for (int s = 0; s < steps; ++s)
    for (int l = 0; l < c.n_layers; ++l) {
      SCOPED_TRACE("step " + std::to_string(s) + " layer " + std::to_string(l));
      const auto& h = rec.hints[static_cast<size_t>(s * c.n_layers + l)];
      const int resident = c.n_kv_heads - (l == 0 ? offloaded : 0);
      ASSERT_EQ(h.ranges.size(), static_cast<size_t>(2 * resident)) << "K and V of each resident head";
      std::set<const void*> distinct;
      for (const ByteRange& r : h.ranges) {
        EXPECT_NE(r.p, nullptr);
        EXPECT_EQ(r.bytes, kv_row_bytes(c, DType::F32) * static_cast<size_t>(prompt.size() + s));
        distinct.insert(r.p);
      }
      EXPECT_EQ(distinct.size(), h.ranges.size());
      EXPECT_EQ(h.next_matmul_rows, qkv_rows) << "the hint goes to the QKV projection";
    }
}

}  // namespace
}  // namespace headinfer
