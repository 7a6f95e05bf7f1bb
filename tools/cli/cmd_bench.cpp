// `headinfer bench`: per context, a real prefill of random ids (or, above
// --fill-above, a synthetic KV fill: runtime/kv_fill.hpp) then N greedy decode
// steps, R repetitions, under the same plan flags as `generate`. One row per
// context with the measurements beside the plan's predictions and the floors
// measured in the same process; md, csv or json on stdout, progress on stderr.
#include <algorithm>
#include <cstdio>
#include <memory>

#include "backend/backend_factory.hpp"
#include "backend/profiling_backend.hpp"
#include "bench_context.hpp"
#include "bench_max_context.hpp"
#include "bench_rows.hpp"
#include "commands.hpp"
#include "common/units.hpp"
#include "format/model_loader.hpp"
#include "headinfer/error.hpp"
#include "kv/link_bandwidth.hpp"
#include "runtime/bench_run.hpp"

namespace headinfer::cli {
namespace {

struct BenchOptions {
  ModelOptions model;
  PlanOptions plan;
  std::string contexts = "4K";
  std::string kv_type = "auto";
  std::string fill_above;  // empty: always a real prefill
  std::string format = "md";
  int decode_tokens = 16;
  int reps = 3;
  int chunk_size = 0;
  bool profile = false;
  bool max_context = false;
  bool context_given = false;
  std::string host_memory;
  uint64_t seed = 1234;
};

constexpr int64_t kMaxContext = -1;  // "max" in --context: the longest the plan accepts

std::vector<int64_t> parse_context_list(const std::string& text) {
  std::vector<int64_t> out;
  size_t pos = 0;
  while (pos <= text.size()) {
    const size_t comma = text.find(',', pos);
    const std::string item = text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    const int64_t n = item == "max" ? kMaxContext : parse_tokens(item, "--context");
    HI_CHECK(n > 0 || n == kMaxContext, "--context: " << item << ": expected a positive token count or max");
    out.push_back(n);
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return out;
}

int run_bench(const BenchOptions& o) {
  // Everything the user typed is checked before a model is built.
  const ReportFormat format = parse_report_format(o.format);
  HI_CHECK(!(o.max_context && o.context_given), "--max-context finds the context itself; drop --context");
  const std::vector<int64_t> contexts = parse_context_list(o.contexts);
  HI_CHECK(o.reps > 0, "--reps must be positive, got " << o.reps);
  HI_CHECK(o.decode_tokens >= 0, "--decode-tokens must not be negative, got " << o.decode_tokens);
  HI_CHECK(o.chunk_size >= 0, "--chunk-size must not be negative, got " << o.chunk_size);
  const int64_t fill_above = o.fill_above.empty() ? -1 : parse_tokens(o.fill_above, "--fill-above");
  parse_offload_mode(o.plan.offload);
  PlanOptions plan = o.plan;
  if (!o.host_memory.empty()) plan.host_memory = parse_bytes(o.host_memory, "--host-memory");

  const LoadedModel m = load_model(o.model.model);
  const DType kv_dtype = kv_dtype_for(o.kv_type, m.weight_dtype);
  for (int64_t c : contexts)
    HI_CHECK(c == kMaxContext || c + o.decode_tokens <= m.config.max_position,
             "--context: " << c << " tokens plus " << o.decode_tokens << " decode tokens exceed the model's context of "
                           << m.config.max_position);
  auto backend = make_backend(o.model.backend, o.model.threads);
  ProfilingBackend prof(*backend);
  const bool cpu = backend->name().rfind("cpu", 0) == 0;

  // Floors come from bandwidths measured here, before any budget applies.
  MeasuredSpeeds speeds;
  // Smaller probes on the CPU backend, whose copies are memcpy on a shared host.
  speeds.h2d_gbs = std::max(measure_link_gbs(*backend), measure_link_stream_gbs(*backend, size_t{4} << 20,
                                                                                 cpu ? 16 : 64));
  speeds.d2d_gbs = measure_device_copy_gbs(*backend, cpu ? size_t{64} << 20 : size_t{1} << 30);
  std::fprintf(stderr, "bench: %s on %s: H2D %.1f GB/s, device copy %.1f GB/s (read + write)\n", m.spec.c_str(),
               backend->name().c_str(), speeds.h2d_gbs, speeds.d2d_gbs);

  // --max-context, or "max" in --context: the longest context this process's plan
  // accepts (the host RAM it sees, after the model is loaded), then run like the rest.
  const std::vector<int64_t> asked = o.max_context ? std::vector<int64_t>{kMaxContext} : contexts;
  std::vector<std::pair<int64_t, MaxContext>> runs;
  for (int64_t c : asked) {
    if (c != kMaxContext) {
      runs.push_back({c, MaxContext{}});
      continue;
    }
    const MaxContext mc = find_max_context(m, *backend, plan, kv_dtype, o.decode_tokens, o.chunk_size);
    std::fprintf(stderr, "bench: max context by plan: %lld tokens (%s), limited by %s: %s\n",
                 static_cast<long long>(mc.context), format_tokens(mc.context).c_str(), mc.limit.c_str(),
                 mc.detail.c_str());
    runs.push_back({mc.context, mc});
  }
  const bool any_max = std::find(asked.begin(), asked.end(), kMaxContext) != asked.end();

  ReportTable table;
  auto columns = bench_markdown_columns(o.profile);
  if (any_max) columns.insert(columns.end() - 1, {"max_context_limit", "limited by"});
  table.set_markdown_columns(columns);
  for (const auto& [context, mc] : runs) {
    BenchConfig bc;
    bc.model = &m;
    bc.backend_name = backend->name();
    bc.kv_dtype = kv_dtype;
    bc.offload = o.plan.offload;
    bc.gpu_budget = o.plan.gpu_memory.empty() ? -1 : parse_bytes(o.plan.gpu_memory, "--gpu-memory");
    bc.run.context = context;
    // --max-context verifies with a synthetic fill unless --fill-above says otherwise:
    // a prefill of the longest context is what the mode exists to avoid.
    const bool is_max = !mc.limit.empty();
    bc.run.synthetic_fill = fill_above >= 0 ? context > fill_above : is_max;
    bc.run.decode_tokens = o.decode_tokens;
    bc.run.reps = o.reps;
    bc.run.seed = o.seed;
    bc.profile = o.profile;
    const BenchMeasured r = measure_context(m, prof, plan, o.chunk_size, bc);
    std::vector<Field> row = bench_row(bc, speeds, r);
    if (any_max) {
      row.push_back({"max_context_limit", mc.limit, ""});
      row.push_back({"max_context_detail", mc.detail, ""});
    }
    table.add(std::move(row));
  }
  table.write(format, stdout);
  std::fflush(stdout);
  return 0;
}

}  // namespace

Runner add_bench(CLI::App& app) {
  auto* cmd = app.add_subcommand("bench", "measure prefill and decode per context: rows of tok/s, ms/token, memory, "
                                          "traffic, the plan's predictions and measured floors (md, csv, json)");
  auto o = std::make_shared<BenchOptions>();
  add_model_options(*cmd, o->model);
  add_plan_options(*cmd, o->plan);
  auto* context_opt = cmd->add_option("--context", o->contexts,
                                      "contexts to measure, comma-separated (16K,128K,1M); max: the longest the "
                                      "plan accepts, as --max-context finds it")
                          ->capture_default_str();
  cmd->add_flag("--max-context", o->max_context,
                "find the longest context the plan accepts under --gpu-memory (and host RAM), run it (synthetic "
                "fill unless --fill-above), and report what limits it");
  cmd->add_option("--host-memory", o->host_memory,
                  "host RAM the offloaded KV may use (default: MemAvailable, or the cgroup's headroom, less 1/32 "
                  "of RAM)");
  cmd->add_option("--decode-tokens", o->decode_tokens, "greedy decode steps after each prefill")->capture_default_str();
  cmd->add_option("--reps", o->reps, "repetitions of prefill + decode per context")->capture_default_str();
  cmd->add_option("--fill-above", o->fill_above,
                  "contexts above this many tokens get a synthetic KV fill (random K/V, no prefill) instead of a "
                  "prefill, so decode at 1M+ is measured in minutes (default: always prefill)");
  cmd->add_option("--chunk-size", o->chunk_size, "prefill chunk size in tokens (0: the plan's)")->capture_default_str();
  cmd->add_option("--kv-type", o->kv_type, "KV cache type: auto, f32, bf16, f16")->capture_default_str();
  cmd->add_flag("--profile", o->profile,
                "one more prefill and up to 8 decode steps per context, profiled: gemm / attention / other shares and time per op");
  cmd->add_option("--seed", o->seed, "seed of the random prompt ids")->capture_default_str();
  cmd->add_option("-o,--output-format", o->format, "md, csv or json")->capture_default_str();
  return [o, context_opt] {
    o->context_given = context_opt->count() > 0;
    return run_bench(*o);
  };
}

}  // namespace headinfer::cli
