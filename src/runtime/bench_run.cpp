#include "runtime/bench_run.hpp"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>

#include "headinfer/error.hpp"
#include "runtime/kv_fill.hpp"
#include "runtime/sampler.hpp"

namespace headinfer {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

TransferStats operator-(const TransferStats& b, const TransferStats& a) {
  return TransferStats{b.h2d_bytes - a.h2d_bytes, b.d2h_bytes - a.d2h_bytes, b.h2d_copies - a.h2d_copies,
                       b.d2h_copies - a.d2h_copies};
}

void accumulate(TransferStats& sum, const TransferStats& d) {
  sum.h2d_bytes += d.h2d_bytes;
  sum.d2h_bytes += d.d2h_bytes;
  sum.h2d_copies += d.h2d_copies;
  sum.d2h_copies += d.d2h_copies;
}

// A chunked prefill of `prompt` from position 0; returns the last logits.
const std::vector<float>& prefill(Executor& exec, const std::vector<int32_t>& prompt, int chunk, int rep,
                                  const BenchHooks& hooks) {
  exec.reset();
  const std::vector<float>* logits = nullptr;
  const int64_t n = static_cast<int64_t>(prompt.size());
  for (int64_t i = 0; i < n; i += chunk) {
    const int m = static_cast<int>(std::min<int64_t>(chunk, n - i));
    logits = &exec.forward(prompt.data() + i, m);  // returns once the logits are on the host
    if (hooks.progress) hooks.progress("prefill", rep, i + m, n);
  }
  return *logits;
}

// HEADINFER_GREEDY_LOCKSTEP=1: each decode step waits for the one before it to reach
// the host (forward_greedy), as before steps were issued ahead (for A/B runs).
bool lock_step() {
  static const bool on = [] {
    const char* e = std::getenv("HEADINFER_GREEDY_LOCKSTEP");
    return e && std::string(e) == "1";
  }();
  return on;
}

// `steps` greedy decode steps after `id`, each issued before the one before it is read
// back (Executor::issue_greedy); returns the last id. A step's time runs from the
// previous step's id reaching the host to its own.
int32_t decode_greedy(Executor& exec, int32_t id, int steps, std::vector<double>* step_ms,
                      const std::function<void(int)>& on_step = {}) {
  auto t0 = Clock::now();
  int done = 0;
  auto lap = [&] {
    const auto t = Clock::now();
    if (step_ms) step_ms->push_back(std::chrono::duration<double, std::milli>(t - t0).count());
    t0 = t;
    if (on_step) on_step(++done);
  };
  if (lock_step()) {
    for (int i = 0; i < steps; ++i) {
      id = exec.forward_greedy(&id, 1);
      lap();
    }
    return id;
  }
  if (steps > 0) exec.issue_greedy(&id);
  for (int i = 0; i < steps; ++i) {
    if (i + 1 < steps) exec.issue_greedy(nullptr);
    id = exec.take_greedy();
    lap();
  }
  return id;
}

}  // namespace

std::vector<int32_t> random_prompt(int64_t n, int vocab_size, uint64_t seed) {
  // Real vocabularies keep control and byte tokens in the first few hundred ids.
  const int lo = vocab_size > 2000 ? 1000 : std::min(3, vocab_size - 1);
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> pick(lo, vocab_size - 1);
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& x : ids) x = pick(rng);
  return ids;
}

BenchTimes run_bench_case(Backend& be, Executor& exec, const ModelConfig& cfg, const BenchCase& c,
                          const BenchHooks& hooks) {
  HI_CHECK(c.context > 0, "bench: context must be positive, got " << c.context);
  HI_CHECK(c.reps > 0, "--reps must be positive, got " << c.reps);
  HI_CHECK(c.decode_tokens >= 0, "--decode-tokens must not be negative, got " << c.decode_tokens);
  const int warmup = c.decode_tokens > 0 ? std::max(0, c.warmup_decode) : 0;
  HI_CHECK(c.context + warmup + c.decode_tokens <= exec.capacity(),
           "bench: context " << c.context << " + " << warmup + c.decode_tokens
                             << " decode tokens (warm-up included) exceed the KV capacity of " << exec.capacity());
  BenchTimes t;
  const std::vector<int32_t> prompt = c.synthetic_fill ? std::vector<int32_t>{}
                                                       : random_prompt(c.context, cfg.vocab_size, c.seed);
  for (int rep = 0; rep < c.reps; ++rep) {
    int32_t next = 0;
    const TransferStats s0 = exec.transfer_stats();
    if (c.synthetic_fill) {
      const auto t0 = Clock::now();
      if (rep == 0 || exec.position() < c.context) synthetic_kv_fill(be, exec, cfg, c.context);
      else rewind_kv(exec, c.context);
      t.fill_seconds.push_back(since(t0));
      if (hooks.progress) hooks.progress("fill", rep, c.context, c.context);
      next = random_prompt(1, cfg.vocab_size, c.seed + static_cast<uint64_t>(rep))[0];
    } else {
      const auto t0 = Clock::now();
      next = argmax(prefill(exec, prompt, c.chunk, rep, hooks));
      t.prefill_seconds.push_back(since(t0));
    }
    accumulate(t.prefill_transfer, exec.transfer_stats() - s0);
    next = decode_greedy(exec, next, warmup, nullptr);
    const TransferStats s1 = exec.transfer_stats();
    const double waited0 = hooks.waits ? hooks.waits->wait_seconds() : 0;
    const auto t0 = Clock::now();
    next = decode_greedy(exec, next, c.decode_tokens, &t.step_ms, [&](int done) {
      if (hooks.progress) hooks.progress("decode", rep, done, c.decode_tokens);
    });
    const double decode_s = since(t0);
    accumulate(t.decode_transfer, exec.transfer_stats() - s1);
    if (hooks.waits) t.decode_wait_seconds += hooks.waits->wait_seconds() - waited0;
    t.decode_steps += c.decode_tokens;
    if (c.decode_tokens > 0) t.decode_ms.push_back(decode_s * 1e3 / c.decode_tokens);
  }
  if (hooks.profiler) {
    // After the timed repetitions: its synchronisation must not slow them.
    ProfilingBackend& p = *hooks.profiler;
    struct Off {  // profiling ends however the block is left
      ProfilingBackend& p;
      ~Off() { p.set_enabled(false); }
    } off{p};
    int32_t next = random_prompt(1, cfg.vocab_size, c.seed + 7)[0];
    if (!c.synthetic_fill) {
      p.reset();
      p.set_enabled(true);
      const auto t0 = Clock::now();
      next = argmax(prefill(exec, prompt, c.chunk, c.reps, hooks));
      t.profile.wall_seconds = since(t0);
      p.set_enabled(false);
      t.profile.phases = p.times();
      t.profile.ops = p.op_times();
      t.profile.ran = true;
    } else {
      rewind_kv(exec, c.context);
    }
    // Where a decode step's time goes: more steps, profiled.
    const int steps = std::min(c.decode_tokens, 8);
    p.reset();
    p.set_enabled(true);
    const auto t0 = Clock::now();
    for (int i = 0; i < steps; ++i) next = exec.forward_greedy(&next, 1);
    t.profile.decode_wall_seconds = since(t0);
    p.set_enabled(false);
    t.profile.decode_phases = p.times();
    t.profile.decode_ops = p.op_times();
    t.profile.decode_steps = steps;
    t.profile.device_timed = p.device_timed();
  }
  return t;
}

Spread spread_of(std::vector<double> v) {
  if (v.empty()) return {};
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  const double med = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
  return Spread{med, v.front(), v.back()};
}

}  // namespace headinfer
