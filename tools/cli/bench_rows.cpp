#include "bench_rows.hpp"

#include <algorithm>
#include <cstdio>
#include <map>

#include "common/units.hpp"
#include "kv/footprint.hpp"

namespace headinfer::cli {
namespace {

constexpr std::monostate kNone{};

std::string fixed(double v, int decimals) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

// "12.3 (12.1-12.9)": median and range over repetitions.
std::string with_range(const Spread& s, int decimals) {
  return fixed(s.median, decimals) + " (" + fixed(s.min, decimals) + "-" + fixed(s.max, decimals) + ")";
}

Field bytes_field(const std::string& key, int64_t v, bool known = true) {
  if (!known || v < 0) return {key, kNone, ""};
  return {key, v, format_bytes(v)};
}

Field number(const std::string& key, double v, int decimals, bool known = true) {
  if (!known) return {key, kNone, ""};
  return {key, v, fixed(v, decimals)};
}

// Per phase of a profiled run: <prefix><phase><time_suffix> (seconds x time_scale),
// <prefix><phase>_pct (of wall) and <prefix><phase><calls_suffix> (calls / per).
struct PhaseFields {
  std::string prefix, time_suffix, calls_suffix;
  double time_scale = 1;
  int64_t per = 1;
};

void push_phases(std::vector<Field>& row, const PhaseFields& f, const PhaseTimes& t, double wall, bool ran) {
  for (Phase ph : {Phase::Gemm, Phase::Attention, Phase::Other}) {
    const std::string name = f.prefix + phase_name(ph);
    row.push_back(number(name + f.time_suffix, t.of(ph) * f.time_scale, 3, ran));
    row.push_back(number(name + "_pct", wall > 0 ? 100.0 * t.of(ph) / wall : 0.0, 1, ran));
    Field calls{name + f.calls_suffix, kNone, ""};
    if (ran) calls.value = static_cast<int64_t>(t.calls_of(ph) / f.per);
    row.push_back(calls);
  }
}

// "matmul 28672x4096 57.1 (32); rope 3.2 (32); ...": each op's time x scale and its
// calls / per, the longest first.
std::string ops_text(const std::map<std::string, OpTime>& ops, double scale, int64_t per) {
  std::vector<std::pair<std::string, OpTime>> v(ops.begin(), ops.end());
  std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.second.seconds > b.second.seconds; });
  std::string s;
  for (const auto& [name, t] : v) {
    if (!s.empty()) s += "; ";
    s += name + " " + fixed(t.seconds * scale, 1) + " (" + std::to_string(t.calls / per) + ")";
  }
  return s;
}

}  // namespace

int64_t decode_weight_read_bytes(const LoadedModel& m) {
  int64_t bytes = prepared_weight_bytes(m.weights);
  if (!m.config.tie_embeddings) {
    const Tensor& e = m.weights.tok_embd;
    bytes -= alloc_rounded(static_cast<int64_t>(dtype_bytes(e.dtype == DType::Q8_0 ? DType::F32 : e.dtype, e.numel())));
  }
  return bytes;
}

std::vector<std::pair<std::string, std::string>> bench_markdown_columns(bool profile) {
  std::vector<std::pair<std::string, std::string>> cols = {
      {"model", "model"},
      {"backend", "backend"},
      {"gpu_budget_bytes", "budget"},
      {"context", "context"},
      {"fill", "fill"},
      {"slabs_resident", "slabs res/off"},
      {"chunk", "chunk"},
      {"prefill_tps", "prefill tok/s"},
      {"decode_ms", "decode ms/token"},
      {"predicted_decode_ms", "predicted ms"},
      {"decode_floor_ms", "floor ms"},
      {"x_floor", "x floor"},
      {"gpu_peak_bytes", "GPU peak"},
      {"predicted_gpu_bytes", "predicted GPU"},
      {"host_kv_bytes", "host KV"},
      {"host_pinned_bytes", "host pinned"},
      {"h2d_per_token_bytes", "H2D/token"},
      {"link_gbs", "link GB/s"},
  };
  if (profile) {
    cols.push_back({"profile_prefill_s", "profiled prefill s"});
    cols.push_back({"gemm_pct", "gemm %"});
    cols.push_back({"attention_pct", "attention %"});
    cols.push_back({"other_pct", "other %"});
    cols.push_back({"profile_decode_ms", "profiled decode ms"});
    cols.push_back({"decode_gemm_pct", "decode gemm %"});
    cols.push_back({"decode_attention_pct", "decode attention %"});
    cols.push_back({"decode_other_pct", "decode other %"});
  }
  cols.push_back({"status", "status"});
  return cols;
}

std::vector<Field> bench_row(const BenchConfig& c, const MeasuredSpeeds& s, const BenchMeasured& r) {
  const LoadedModel& m = *c.model;
  const BenchTimes& t = r.times;
  const Plan& p = r.plan;
  const int64_t ctx = c.run.context;
  const int64_t row_bytes = static_cast<int64_t>(dtype_bytes(c.kv_dtype, m.config.head_dim));
  const int64_t slab_bytes = 2 * row_bytes * ctx;  // K and V of one (layer, KV head) at the context
  const int64_t weights = decode_weight_read_bytes(m);
  const int64_t resident_kv = r.planned ? p.resident_slabs * slab_bytes : -1;
  const int64_t offloaded_kv = r.planned ? p.offloaded_slabs * slab_bytes : -1;
  const bool timed = r.ran && t.decode_steps > 0;
  const bool prefilled = r.ran && !t.prefill_seconds.empty();

  std::vector<double> tps;
  for (double sec : t.prefill_seconds) tps.push_back(static_cast<double>(ctx) / sec);
  const Spread prefill = spread_of(tps);
  const Spread decode = spread_of(t.decode_ms);
  const double floor_ms =
      r.planned && s.d2d_gbs > 0 && s.h2d_gbs > 0
          ? (static_cast<double>(weights + resident_kv) / (s.d2d_gbs * 1e9) +
             static_cast<double>(offloaded_kv) / (s.h2d_gbs * 1e9)) * 1e3
          : 0;
  const int64_t h2d_tok = timed ? t.decode_transfer.h2d_bytes / t.decode_steps : -1;
  const int64_t d2h_tok = timed ? t.decode_transfer.d2h_bytes / t.decode_steps : -1;
  const bool driver = r.memory.driver_peak_used >= 0;
  const int64_t peak = driver ? r.memory.driver_peak_used : r.memory.peak;

  std::vector<Field> row;
  row.push_back({"engine", std::string("headinfer"), ""});
  row.push_back({"model", m.spec, ""});
  row.push_back({"backend", c.backend_name, ""});
  row.push_back({"weights", std::string(dtype_name(m.weight_dtype)), ""});
  row.push_back({"kv_type", std::string(dtype_name(c.kv_dtype)), ""});
  row.push_back(c.gpu_budget >= 0 ? bytes_field("gpu_budget_bytes", c.gpu_budget)
                                  : Field{"gpu_budget_bytes", kNone, "none"});
  row.push_back({"offload", c.offload, ""});
  row.push_back({"context", ctx, format_tokens(ctx)});
  row.push_back({"fill", std::string(c.run.synthetic_fill ? "synthetic" : "prefill"), ""});
  row.push_back({"status", r.status, ""});
  row.push_back({"reps", int64_t{c.run.reps}, ""});
  row.push_back({"decode_tokens", int64_t{c.run.decode_tokens}, ""});
  if (r.planned) {
    row.push_back({"chunk", int64_t{p.chunk}, ""});
    row.push_back({"slabs_resident", p.resident_slabs,
                   std::to_string(p.resident_slabs) + "/" + std::to_string(p.offloaded_slabs)});
    row.push_back({"slabs_offloaded", p.offloaded_slabs, ""});
  } else {
    row.push_back({"chunk", kNone, ""});
    row.push_back({"slabs_resident", kNone, ""});
    row.push_back({"slabs_offloaded", kNone, ""});
  }
  Field f = number("prefill_tps", prefill.median, 1, prefilled);
  if (prefilled && t.prefill_seconds.size() > 1) f.md = with_range(prefill, 0);
  else if (prefilled) f.md = fixed(prefill.median, 0);
  else if (r.ran) f.md = "(synthetic)";
  row.push_back(f);
  row.push_back(number("prefill_tps_min", prefill.min, 1, prefilled));
  row.push_back(number("prefill_tps_max", prefill.max, 1, prefilled));
  row.push_back(number("prefill_s", spread_of(t.prefill_seconds).median, 3, prefilled));
  row.push_back(number("fill_s", t.fill_seconds.empty() ? 0 : t.fill_seconds[0], 3, r.ran && !t.fill_seconds.empty()));
  f = number("decode_ms", decode.median, 2, timed);
  if (timed) f.md = with_range(decode, decode.median >= 100 ? 0 : 2);
  row.push_back(f);
  row.push_back(number("decode_ms_min", decode.min, 2, timed));
  row.push_back(number("decode_ms_max", decode.max, 2, timed));
  row.push_back(number("predicted_decode_ms", p.seconds_per_token() * 1e3, 2, r.planned));
  row.push_back(number("decode_floor_ms", floor_ms, 2, r.planned && floor_ms > 0));
  row.push_back(number("x_floor", timed && floor_ms > 0 ? decode.median / floor_ms : 0, 2, timed && floor_ms > 0));
  // The host's share of a decode step spent waiting for the device: near 0, the step is
  // bound by issuing its launches.
  row.push_back(number("decode_host_wait_ms",
                       timed ? t.decode_wait_seconds * 1e3 / static_cast<double>(t.decode_steps) : 0, 3, timed));
  row.push_back(bytes_field("gpu_peak_bytes", peak, r.ran));
  row.push_back({"gpu_peak_source", std::string(driver ? "driver" : "accounted"), ""});
  row.push_back(bytes_field("predicted_gpu_bytes", p.gpu_total, r.planned));
  row.push_back(bytes_field("host_kv_bytes", r.host_kv, r.ran));
  row.push_back(bytes_field("host_pinned_bytes", r.host_pinned, r.ran));
  row.push_back(bytes_field("predicted_host_bytes", p.host_bytes, r.planned));
  row.push_back(bytes_field("host_peak_rss_bytes", r.host_peak_rss, r.ran && r.host_peak_rss >= 0));
  row.push_back(bytes_field("h2d_per_token_bytes", h2d_tok, timed));
  row.push_back(bytes_field("d2h_per_token_bytes", d2h_tok, timed));
  row.push_back(bytes_field("predicted_h2d_per_token_bytes", p.h2d_per_token, r.planned));
  row.push_back(number("link_gbs", timed ? static_cast<double>(h2d_tok) / (decode.median * 1e-3) / 1e9 : 0, 2, timed));
  row.push_back(number("plan_link_gbs", p.in.speeds.link_gbs, 2, r.planned));
  row.push_back(number("measured_h2d_gbs", s.h2d_gbs, 2));
  row.push_back(number("measured_d2d_gbs", s.d2d_gbs, 2));
  row.push_back(bytes_field("weight_read_bytes", weights));
  row.push_back(bytes_field("resident_kv_bytes", resident_kv, r.planned));
  row.push_back(bytes_field("offloaded_kv_bytes", offloaded_kv, r.planned));
  // The plan's split of GPU memory past weights and KV (the memory table's columns):
  // activations and scratch, streaming buffers and staging, the driver's own share
  // (context, workspaces) and its page tables for the pinned pool.
  row.push_back(bytes_field("plan_weight_bytes", p.in.weight_bytes, r.planned));
  row.push_back(bytes_field("plan_activation_bytes", p.gpu.activations, r.planned));
  row.push_back(bytes_field("plan_buffer_bytes", p.gpu.buffers + p.gpu.staging, r.planned));
  row.push_back(bytes_field("plan_device_overhead_bytes", p.in.device_overhead, r.planned));
  row.push_back(bytes_field("plan_host_map_bytes", p.host_map, r.planned));
  row.push_back(bytes_field("plan_host_pinned_bytes", p.host_pinned, r.planned));
  row.push_back(number("setup_s", r.setup_seconds, 2, r.ran));
  if (c.profile) {
    const BenchProfile& pr = t.profile;
    const double wall = pr.wall_seconds;
    row.push_back(number("profile_prefill_s", wall, 3, pr.ran));
    push_phases(row, PhaseFields{"", "_s", "_calls"}, pr.phases, wall, pr.ran);
    row.push_back(number("unattributed_pct", wall > 0 ? 100.0 * (wall - pr.phases.total()) / wall : 0.0, 1, pr.ran));
    row.push_back({"profile_timing", std::string(pr.device_timed ? "device" : "synchronised"), ""});
    Field ops{"prefill_ops_ms", kNone, ""};  // per op: ms over the prefill (calls)
    if (pr.ran) ops.value = ops_text(pr.ops, 1e3, 1);
    row.push_back(ops);
    // The profiled decode steps, per token.
    const bool dec = pr.decode_steps > 0;
    const int64_t steps = dec ? pr.decode_steps : 1;
    row.push_back(number("profile_decode_ms", pr.decode_wall_seconds * 1e3 / static_cast<double>(steps), 3, dec));
    push_phases(row, PhaseFields{"decode_", "_ms", "_calls_per_token", 1e3 / static_cast<double>(steps), steps},
                pr.decode_phases, pr.decode_wall_seconds, dec);
    Field dops{"decode_ops_us", kNone, ""};  // per op: microseconds per token (calls per token)
    if (dec) dops.value = ops_text(pr.decode_ops, 1e6 / static_cast<double>(steps), steps);
    row.push_back(dops);
  }
  return row;
}

}  // namespace headinfer::cli
