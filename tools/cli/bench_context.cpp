#include "bench_context.hpp"

#include <chrono>
#include <memory>

#include "common/process_memory.hpp"
#include "common/progress.hpp"
#include "common/units.hpp"
#include "headinfer/error.hpp"

namespace headinfer::cli {
namespace {

// One progress line per (phase, repetition) of a context, on a terminal only.
class BenchProgress {
 public:
  BenchProgress(std::string context, int reps) : context_(std::move(context)), reps_(reps) {}
  ~BenchProgress() { finish(); }
  void update(const std::string& what, int rep, int64_t done, int64_t total) {
    const std::string label = context_ + " " + what +
                              (rep < reps_ ? " rep " + std::to_string(rep + 1) + "/" + std::to_string(reps_)
                                           : std::string(" (profiled)"));
    if (!line_ || label != label_) {
      finish();
      label_ = label;
      line_ = std::make_unique<Progress>(label, total, stderr_is_terminal());
    }
    line_->update(done);
  }
  void finish() {
    if (line_) line_->finish();
    line_.reset();
  }

 private:
  std::string context_, label_;
  int reps_;
  std::unique_ptr<Progress> line_;
};

}  // namespace

BenchMeasured measure_context(const LoadedModel& m, ProfilingBackend& be, const PlanOptions& plan_options,
                              int chunk_size, BenchConfig& c) {
  BenchMeasured r;
  try {
    be.set_device_limit(-1);  // the previous context's budget
    ExecutorOptions eo;
    eo.kv_dtype = c.kv_dtype;
    eo.capacity = c.run.context + c.run.warmup_decode + c.run.decode_tokens;
    r.plan = apply_plan(m, be, plan_options, chunk_size, eo);
    r.planned = true;
    c.run.chunk = r.plan.chunk;
    be.reset_device_peak();
    reset_peak_rss();
    BenchProgress progress(format_tokens(c.run.context), c.run.reps);
    const auto t0 = std::chrono::steady_clock::now();
    Executor exec(be, m, eo);
    r.setup_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    BenchHooks hooks;
    hooks.progress = [&](const std::string& what, int rep, int64_t done, int64_t total) {
      progress.update(what, rep, done, total);
    };
    if (c.profile) hooks.profiler = &be;
    hooks.waits = &be;
    r.times = run_bench_case(be, exec, m.config, c.run, hooks);
    progress.finish();
    r.memory = be.device_memory();
    r.host_kv = static_cast<int64_t>(exec.kv().host_bytes());
    r.host_pinned = static_cast<int64_t>(exec.kv().host_pinned_bytes());
    r.host_peak_rss = peak_rss_bytes();
    r.ran = true;
  } catch (const Error& e) {
    // A refused plan or a failed run is a row of its own; the other contexts still run.
    r.status = e.what();
    std::fprintf(stderr, "bench: context %s: %s\n", format_tokens(c.run.context).c_str(), e.what());
  }
  return r;
}

}  // namespace headinfer::cli
