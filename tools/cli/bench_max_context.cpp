#include "bench_max_context.hpp"

#include "common/units.hpp"
#include "headinfer/error.hpp"
#include "runtime/bench_run.hpp"

namespace headinfer::cli {

MaxContext find_max_context(const LoadedModel& m, Backend& backend, const PlanOptions& o, DType kv, int decode_tokens,
                            int chunk) {
  // The KV also holds the untimed warm-up steps and the timed ones.
  const int64_t extra = BenchCase{}.warmup_decode + decode_tokens;
  auto inputs = [&](int64_t context) { return plan_inputs_for(m, backend, o, kv, context + extra, chunk); };
  // The refusal for `context` tokens, empty when the plan fits.
  auto refusal = [&](const PlanInputs& in) -> std::string {
    try {
      make_plan(in);
      return "";
    } catch (const Error& e) {
      return e.what();
    }
  };
  MaxContext r;
  const int64_t top = m.config.max_position - extra;
  HI_CHECK(top > 0, "--max-context: the model's context of " << m.config.max_position << " tokens leaves no room for "
                                                             << decode_tokens << " decode tokens");
  if (refusal(inputs(top)).empty()) {
    r.context = top;
    r.limit = "model context";
    r.detail = "max_position_embeddings " + std::to_string(m.config.max_position);
    return r;
  }
  // Whole K tokens, so the answer is a context people can type; single tokens when
  // not even 1K fits.
  const int64_t step = top >= 1024 && refusal(inputs(1024)).empty() ? 1024 : 1;
  const std::string first = refusal(inputs(step));
  HI_CHECK(first.empty(), "--max-context: not even " << step << " token fits: " << first);
  int64_t lo = 1, hi = top / step;  // lo fits; hi * step may not
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo + 1) / 2;
    if (refusal(inputs(mid * step)).empty()) lo = mid;
    else hi = mid - 1;
  }
  r.context = lo * step;
  PlanInputs next = inputs(std::min(top, r.context + step));
  r.detail = refusal(next);
  next.host_available = -1;  // would it fit with unlimited host RAM?
  r.limit = refusal(next).empty() ? "host ram" : "gpu budget";
  return r;
}

}  // namespace headinfer::cli
