// The row `headinfer bench` writes per context: what ran, what was measured, what
// the plan predicted, and the floors from bandwidths measured in the same process.
// Field names are shared with bench/peers/hf_bench.py so both tables merge.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "format/model_loader.hpp"
#include "kv/plan.hpp"
#include "report_table.hpp"
#include "runtime/bench_run.hpp"

namespace headinfer::cli {

struct BenchConfig {
  const LoadedModel* model = nullptr;
  std::string backend_name;
  DType kv_dtype = DType::BF16;
  std::string offload;
  int64_t gpu_budget = -1;
  BenchCase run;
  bool profile = false;
};

// Bandwidths measured once at the start (kv/link_bandwidth.hpp).
struct MeasuredSpeeds {
  double h2d_gbs = 0;  // host -> device copies, the faster of one 64 MiB copy and back-to-back 4 MiB copies
  double d2d_gbs = 0;  // Backend::copy, bytes read + written per second
};

struct BenchMeasured {
  bool planned = false, ran = false;
  std::string status = "ok";  // else the error that stopped this context
  Plan plan;
  double setup_seconds = 0;
  BenchTimes times;
  DeviceMemoryInfo memory;
  int64_t host_kv = 0;      // the host KV pool, pinned and pageable
  int64_t host_pinned = 0;  // the pinned part of it
  int64_t host_peak_rss = -1;  // the process's peak resident bytes over this context, -1: unknown
};

// Bytes one decode step reads from device memory besides offloaded KV: every weight
// once except an untied embedding table (one row), plus the resident K and V.
int64_t decode_weight_read_bytes(const LoadedModel& m);

std::vector<Field> bench_row(const BenchConfig& c, const MeasuredSpeeds& s, const BenchMeasured& r);
std::vector<std::pair<std::string, std::string>> bench_markdown_columns(bool profile);

}  // namespace headinfer::cli
