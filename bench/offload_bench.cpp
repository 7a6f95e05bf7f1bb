// Head-wise offloading on the GPU, end to end (issue 4, docs/offload.md "GPU").
//
//   offload_bench [--model SPEC] [--decode N] RUN...
//   RUN = CONTEXT:BUDGET:MODE:FILL[:DECODE]
//     CONTEXT  tokens (128K, 512K, ...)
//     BUDGET   --gpu-memory (24GiB, 16.5GiB) or "none" (no limit)
//     MODE     --offload auto | all | none
//     FILL     prefill (a real chunked prefill of random tokens) or synthetic (random
//              K/V written straight into the slabs and the host pool, then the length
//              set: for contexts whose real prefill would not fit the time available;
//              decode then runs exactly as after a prefill, over random keys)
//   e.g. offload_bench 128K:24GiB:auto:prefill 128K:none:none:prefill 512K:16.5GiB:all:synthetic:3
//
// The synthetic fill and the timing loop are the library's (runtime/kv_fill.hpp,
// runtime/bench_run.hpp), shared with `headinfer bench`.
// All runs share one process, one backend and one model (default synthetic:llama-3-8b,
// BF16). Pinned host->device bandwidth is measured first, in the same process, with
// 64 MiB and 4 MiB copies. Per run: the plan (as `headinfer generate` makes it: the
// device overhead is what the driver reports in use before the run), prefill tok/s,
// decode ms/token (median), H2D bytes per token and achieved GB/s, the transfer floor
// (offloaded bytes per token / measured bandwidth), and the driver-measured peak
// against the budget and the plan's prediction. A table of all runs comes last.
#ifdef HEADINFER_HAVE_CUDA

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "backend/cuda/cuda_backend.hpp"
#include "common/units.hpp"
#include "format/model_loader.hpp"
#include "headinfer/error.hpp"
#include "kv/link_bandwidth.hpp"
#include "kv/plan.hpp"
#include "runtime/bench_run.hpp"
#include "runtime/executor.hpp"

namespace {

using namespace headinfer;
using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct RunSpec {
  std::string text;
  int64_t context = 0;
  int64_t budget = -1;
  OffloadMode mode = OffloadMode::Auto;
  bool synthetic = false;
  int decode = 0;
};

struct Result {
  RunSpec spec;
  Plan plan;
  double setup_s = 0, pinned_s = 0, fill_s = 0;
  double prefill_s = 0, prefill_tps = 0;
  double decode_ms = 0, decode_min_ms = 0, decode_max_ms = 0;
  int64_t h2d_per_token = 0, d2h_per_token = 0;
  double achieved_gbs = 0, floor_ms = 0;
  int64_t driver_peak = 0, accounted_peak = 0;
  int64_t host_pool = 0;
};

RunSpec parse_run(const std::string& text, int default_decode) {
  std::vector<std::string> f;
  size_t pos = 0;
  while (true) {
    const size_t c = text.find(':', pos);
    f.push_back(text.substr(pos, c == std::string::npos ? std::string::npos : c - pos));
    if (c == std::string::npos) break;
    pos = c + 1;
  }
  HI_CHECK(f.size() == 4 || f.size() == 5, "run '" << text << "': expected CONTEXT:BUDGET:MODE:FILL[:DECODE]");
  RunSpec r;
  r.text = text;
  r.context = parse_tokens(f[0], "context");
  r.budget = f[1] == "none" ? -1 : parse_bytes(f[1], "budget");
  r.mode = parse_offload_mode(f[2]);
  HI_CHECK(f[3] == "prefill" || f[3] == "synthetic", "run '" << text << "': FILL is prefill or synthetic");
  r.synthetic = f[3] == "synthetic";
  r.decode = f.size() == 5 ? std::atoi(f[4].c_str()) : default_decode;
  return r;
}

Result run_one(Backend& be, const LoadedModel& m, const RunSpec& rs, double link_gbs) {
  const ModelConfig& cfg = m.config;
  Result r;
  r.spec = rs;
  be.set_device_limit(-1);
  const DeviceMemoryInfo before = be.device_memory();
  PlanInputs in;
  in.model_name = m.spec;
  in.cfg = cfg;
  in.kv_dtype = DType::BF16;
  in.context = rs.context + rs.decode;
  in.gpu_budget = rs.budget;
  in.mode = rs.mode;
  in.weight_bytes = prepared_weight_bytes(m.weights);
  in.device_overhead = before.driver_total - before.driver_free;
  in.host_available = host_memory_available();
  in.speeds.link_gbs = link_gbs;
  r.plan = make_plan(in);
  const Plan& p = r.plan;
  std::printf("\n== run %s\nplan: %lld resident + %lld offloaded slabs, chunk %d, block %lld, buffers %d x %s, "
              "groups %d (layer 0); predicted GPU %s (overhead %s), host pool %s, H2D/token %s, %.3f s/token\n",
              rs.text.c_str(), static_cast<long long>(p.resident_slabs), static_cast<long long>(p.offloaded_slabs),
              p.chunk, static_cast<long long>(p.schedule.block_tokens), p.schedule.n_buffers,
              format_bytes(p.schedule.buffer_bytes).c_str(), p.schedule.group_heads[0], format_bytes(p.gpu_total).c_str(),
              format_bytes(in.device_overhead).c_str(), format_bytes(p.host_bytes).c_str(),
              format_bytes(p.h2d_per_token).c_str(), p.seconds_per_token());
  std::fflush(stdout);
  if (rs.budget >= 0) be.set_device_limit(rs.budget - in.device_overhead);
  be.reset_device_peak();

  ExecutorOptions eo;
  eo.max_chunk = p.chunk;
  eo.mlp_chunk = p.mlp_chunk;
  eo.capacity = in.context;
  eo.kv_dtype = in.kv_dtype;
  eo.schedule = p.schedule;
  const double pinned0 = cuda_pinned_stats(be).alloc_seconds;
  auto t0 = Clock::now();
  Executor exec(be, m, eo);
  r.setup_s = since(t0);
  r.pinned_s = cuda_pinned_stats(be).alloc_seconds - pinned0;
  r.host_pool = static_cast<int64_t>(exec.kv().host_bytes());
  std::printf("setup: %.2f s (pinned %s in %.2f s)\n", r.setup_s, format_bytes(r.host_pool).c_str(), r.pinned_s);
  std::fflush(stdout);

  BenchCase bc;
  bc.context = rs.context;
  bc.synthetic_fill = rs.synthetic;
  bc.decode_tokens = rs.decode;
  bc.chunk = p.chunk;
  const BenchTimes t = run_bench_case(be, exec, cfg, bc);
  if (rs.synthetic) {
    r.fill_s = t.fill_seconds[0];
    std::printf("synthetic fill of %lld tokens: %.2f s\n", static_cast<long long>(rs.context), r.fill_s);
  } else {
    r.prefill_s = t.prefill_seconds[0];
    r.prefill_tps = static_cast<double>(rs.context) / r.prefill_s;
    std::printf("prefill: %lld tokens in %.2f s = %.0f tok/s; H2D %s, D2H %s\n", static_cast<long long>(rs.context),
                r.prefill_s, r.prefill_tps, format_bytes(t.prefill_transfer.h2d_bytes).c_str(),
                format_bytes(t.prefill_transfer.d2h_bytes).c_str());
  }
  std::fflush(stdout);
  if (t.decode_steps > 0) {
    const Spread steps = spread_of(t.step_ms);
    r.decode_ms = steps.median;
    r.decode_min_ms = steps.min;
    r.decode_max_ms = steps.max;
    r.h2d_per_token = t.decode_transfer.h2d_bytes / t.decode_steps;
    r.d2h_per_token = t.decode_transfer.d2h_bytes / t.decode_steps;
    r.achieved_gbs = static_cast<double>(r.h2d_per_token) / (r.decode_ms * 1e-3) / 1e9;
    r.floor_ms = static_cast<double>(r.h2d_per_token) / (link_gbs * 1e9) * 1e3;
    std::printf("decode: %d steps, median %.1f ms/token (min %.1f, max %.1f); H2D %s/token at %.1f GB/s achieved, "
                "D2H %s/token; transfer floor %.1f ms\n",
                rs.decode, r.decode_ms, r.decode_min_ms, r.decode_max_ms, format_bytes(r.h2d_per_token).c_str(),
                r.achieved_gbs, format_bytes(r.d2h_per_token).c_str(), r.floor_ms);
  }
  const DeviceMemoryInfo mem = be.device_memory();
  r.driver_peak = mem.driver_peak_used;
  r.accounted_peak = mem.peak;
  std::printf("memory: driver peak %s, predicted %s (%.3fx), accounted peak %s (engine predicted %s), budget %s\n",
              format_bytes(r.driver_peak).c_str(), format_bytes(p.gpu_total).c_str(),
              static_cast<double>(r.driver_peak) / static_cast<double>(p.gpu_total),
              format_bytes(r.accounted_peak).c_str(), format_bytes(p.gpu_total - in.device_overhead - p.host_map).c_str(),
              rs.budget >= 0 ? format_bytes(rs.budget).c_str() : "none");
  std::fflush(stdout);
  return r;
}

int bench_main(int argc, char** argv) {
  std::string spec = "synthetic:llama-3-8b";
  int decode = 8;
  std::vector<RunSpec> runs;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--model" && i + 1 < argc) spec = argv[++i];
    else if (a == "--decode" && i + 1 < argc) decode = std::atoi(argv[++i]);
    else runs.push_back(parse_run(a, decode));
  }
  HI_CHECK(!runs.empty(), "usage: offload_bench [--model SPEC] [--decode N] CONTEXT:BUDGET:MODE:FILL[:DECODE]...");
  HI_CHECK(cuda_available(), "offload_bench: no CUDA device");
  auto t0 = Clock::now();
  const LoadedModel m = load_model(spec);
  std::printf("model %s: %s of weights, made in %.1f s\n", spec.c_str(),
              format_bytes(prepared_weight_bytes(m.weights)).c_str(), since(t0));
  auto be = make_cuda_backend(0);
  const double gbs64 = measure_link_gbs(*be, size_t{64} << 20, 8);
  const double gbs4 = measure_link_stream_gbs(*be, size_t{4} << 20, 64, 5);
  std::printf("%s: pinned H2D %.1f GB/s (single 64 MiB copies), %.1f GB/s (64 back-to-back 4 MiB copies)\n",
              be->name().c_str(), gbs64, gbs4);
  std::fflush(stdout);
  // The transfer floor uses the faster figure: the engine cannot beat the link.
  const double link = std::max(gbs64, gbs4);
  std::vector<Result> results;
  for (const RunSpec& rs : runs) results.push_back(run_one(*be, m, rs, link));

  std::printf("\n| run | slabs res/off | chunk | prefill tok/s | decode ms/token | H2D/token | achieved GB/s | "
              "transfer floor ms | driver peak | predicted | budget |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const Result& r : results)
    std::printf("| %s | %lld/%lld | %d | %s | %.1f | %s | %.1f | %.1f | %s | %s | %s |\n", r.spec.text.c_str(),
                static_cast<long long>(r.plan.resident_slabs), static_cast<long long>(r.plan.offloaded_slabs),
                r.plan.chunk, r.spec.synthetic ? "(synthetic)" : std::to_string(static_cast<int64_t>(r.prefill_tps)).c_str(),
                r.decode_ms, format_bytes(r.h2d_per_token).c_str(), r.achieved_gbs, r.floor_ms,
                format_bytes(r.driver_peak).c_str(), format_bytes(r.plan.gpu_total).c_str(),
                r.spec.budget >= 0 ? format_bytes(r.spec.budget).c_str() : "none");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return bench_main(argc, argv);
  } catch (const headinfer::Error& e) {
    std::fprintf(stderr, "offload_bench: %s\n", e.what());
    return 1;
  }
}

#else

#include <cstdio>

int main() {
  std::printf("offload_bench: built without CUDA (configure with the cuda preset)\n");
  return 0;
}

#endif
