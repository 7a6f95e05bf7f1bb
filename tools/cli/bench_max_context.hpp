// `headinfer bench --max-context`: the longest context the plan accepts under the
// budget (binary search over whole K tokens on make_plan, nothing allocated), and
// what stops it one step further: the GPU budget, host RAM for the offloaded KV, or
// the model's trained context.
#pragma once

#include <string>

#include "commands.hpp"

namespace headinfer::cli {

struct MaxContext {
  int64_t context = 0;   // prompt tokens; decode tokens fit on top
  std::string limit;     // "gpu budget", "host ram" or "model context"
  std::string detail;    // the plan's refusal one step further (or the trained context)
};

MaxContext find_max_context(const LoadedModel& m, Backend& backend, const PlanOptions& o, DType kv_dtype,
                            int decode_tokens, int chunk);

}  // namespace headinfer::cli
