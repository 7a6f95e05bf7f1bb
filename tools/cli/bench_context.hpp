// One context of `headinfer bench`: plan it as `generate` would (refusing before
// anything is allocated), build the Executor on the profiling wrapper, run the
// repetitions, and collect memory and traffic. Errors become the row's status.
#pragma once

#include "backend/profiling_backend.hpp"
#include "bench_rows.hpp"
#include "commands.hpp"

namespace headinfer::cli {

// `c` says what to run (context, fill, decode tokens, reps); its run.chunk is set
// from the plan.
BenchMeasured measure_context(const LoadedModel& m, ProfilingBackend& backend, const PlanOptions& plan_options,
                              int chunk_size, BenchConfig& c);

}  // namespace headinfer::cli
