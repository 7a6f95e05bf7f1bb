// The measurement loop of the benchmarks (`headinfer bench`, bench/offload_bench):
// on an Executor already made for the plan, per repetition a real chunked prefill of
// random token ids (or a synthetic KV fill, kv_fill.hpp) then greedy decode steps,
// as the generator runs them: each queued behind the one before it
// (Executor::issue_greedy), its id found on the backend (as HF's greedy decoding does
// on the GPU) and timed from the previous id's arrival on the host to its own.
// HEADINFER_GREEDY_LOCKSTEP=1 waits for each id before the next step (forward_greedy).
// Optionally one more prefill under a
// ProfilingBackend for the per-phase breakdown, outside the timed repetitions.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "backend/profiling_backend.hpp"
#include "runtime/executor.hpp"

namespace headinfer {

struct BenchCase {
  int64_t context = 0;      // prompt tokens (or filled tokens)
  bool synthetic_fill = false;
  int decode_tokens = 0;    // timed decode steps per repetition
  // Untimed decode steps before the timed ones in each repetition (when any are timed),
  // so a first step's one-off costs (kernel selection, allocator growth) stay out of
  // the figure; hf_bench.py does the same for HF transformers.
  int warmup_decode = 1;
  int reps = 1;
  int chunk = 512;          // prefill chunk (the plan's)
  uint64_t seed = 1234;     // of the prompt ids
};

struct BenchProfile {
  bool ran = false;
  bool device_timed = false;  // device timestamps (else every op synchronised: slower)
  double wall_seconds = 0;    // the profiled prefill, start to end
  PhaseTimes phases;
  std::map<std::string, OpTime> ops;
  // Profiled decode steps from the full context (prefilled or filled), after the timed ones.
  int64_t decode_steps = 0;
  double decode_wall_seconds = 0;
  PhaseTimes decode_phases;
  std::map<std::string, OpTime> decode_ops;
};

struct BenchTimes {
  std::vector<double> prefill_seconds;  // per repetition (real prefill only)
  std::vector<double> fill_seconds;     // per repetition (synthetic fill; later ones only rewind)
  std::vector<double> decode_ms;        // per repetition: mean ms per decode step
  std::vector<double> step_ms;          // every decode step of every repetition, in order
  TransferStats prefill_transfer;       // bytes moved, summed over repetitions
  TransferStats decode_transfer;
  int64_t decode_steps = 0;             // over all repetitions
  double decode_wait_seconds = 0;       // host blocked on the device in the timed steps (hooks.waits)
  BenchProfile profile;
};

struct BenchHooks {
  // (what, done, total): what is "prefill", "fill" or "decode"; rep counts from 0.
  std::function<void(const std::string& what, int rep, int64_t done, int64_t total)> progress;
  ProfilingBackend* profiler = nullptr;  // when set: one extra profiled prefill, and decode steps
  const ProfilingBackend* waits = nullptr;  // when set: its host wait time over the timed decode steps
};

// Random ordinary token ids (never the first ids, where the control tokens sit).
std::vector<int32_t> random_prompt(int64_t n, int vocab_size, uint64_t seed);

// The Executor must hold context + decode_tokens tokens and take chunks of `chunk`.
BenchTimes run_bench_case(Backend& backend, Executor& exec, const ModelConfig& cfg, const BenchCase& c,
                          const BenchHooks& hooks = {});

// Median, min and max of a non-empty list (0s when empty).
struct Spread {
  double median = 0, min = 0, max = 0;
};
Spread spread_of(std::vector<double> v);

}  // namespace headinfer
