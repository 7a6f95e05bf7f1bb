// The residency planner: given the model, the context, the GPU memory budget and
// the link bandwidth, it fixes everything the device will hold before the first
// token (weights, resident slabs, fixed-size ping-pong buffers, staging, chunk
// activations) and predicts memory, traffic and time per decode token. A plan that
// cannot fit is refused, in numbers, before anything is allocated.
#pragma once

#include <cstdint>
#include <string>

#include "kv/footprint.hpp"
#include "kv/kv_schedule.hpp"
#include "model/model_config.hpp"

namespace headinfer {

enum class OffloadMode { Auto, All, None };
OffloadMode parse_offload_mode(const std::string& text);  // "auto", "all", "none" (--offload)
const char* offload_mode_name(OffloadMode m);

// Speeds of the device the plan is for.
struct DeviceSpeeds {
  double link_gbs = 54.0;      // host -> device copies, GB/s (measured: link_bandwidth.hpp)
  double pageable_gbs = 0;     // the same from pageable memory (0: link_gbs / 4 until measured)
  double mem_gbs = 2700.0;     // device memory reads (weights and resident KV in decode)
  double attn_tflops = 630.0;  // prefill attention throughput
  // Device memory the driver takes per byte of pinned host memory: the GPU's page
  // tables for it, 8 bytes per 4 KiB page (measured: 0.13 GiB for a 65 GiB pool).
  double pinned_map_ratio = 1.0 / 512;
  static DeviceSpeeds for_backend(const std::string& backend_name);
};

struct PlanInputs {
  std::string model_name;
  ModelConfig cfg;
  DType kv_dtype = DType::BF16;
  int64_t context = 0;           // tokens the KV cache must hold
  int64_t gpu_budget = -1;       // bytes the device may use (< 0: unlimited)
  OffloadMode mode = OffloadMode::Auto;
  int64_t weight_bytes = 0;      // prepared_weight_bytes()
  int64_t device_overhead = 0;   // device memory outside the engine's allocations (context, workspaces)
  int64_t host_available = -1;   // host RAM the KV pool may take (< 0: unknown)
  // >= 0: the device memory is host RAM too (the CPU backend with no budget given), so
  // the device allocations beyond these weight bytes (used in place) and the pool must
  // fit host_available together.
  int64_t host_backed_weights = -1;
  int chunk = 0;  // prefill chunk (0: from the roofline, larger when every slab is resident)
  DeviceSpeeds speeds;
  int64_t min_copy_bytes = int64_t{4} << 20;  // smallest copy that runs at full link speed

  // Whether a plan with every slab resident drops the offload roofline's sizes: a chunk
  // larger than the roofline's and one attention block over the whole context (no
  // copies to size it for). No --chunk-size (a fixed chunk compares plans: blocks stay
  // too) and a GPU (on the CPU backend a larger chunk would only take RAM).
  bool resident_may_grow() const { return chunk == 0 && host_backed_weights < 0; }
};

struct Plan {
  PlanInputs in;
  int chunk = 0;
  int mlp_chunk = 0;
  KvSchedule schedule;
  int64_t resident_slabs = 0, offloaded_slabs = 0;
  DeviceFootprint gpu;           // engine allocations
  int64_t host_bytes = 0;        // the host pool at this context
  int64_t host_map = 0;          // device memory mapping the pinned host pool (page tables)
  int64_t host_pinned = 0;       // bytes of the host pool pinned (the rest is pageable)
  int64_t gpu_total = 0;         // weights + gpu.total() + device_overhead + host_map: what the driver will see
  int64_t h2d_per_token = 0;     // bytes moved per decode token at the full context
  int64_t d2h_per_token = 0;
  double transfer_seconds = 0;   // h2d_per_token over the link
  double compute_seconds = 0;    // weights and resident KV read once per token
  double seconds_per_token() const { return transfer_seconds + compute_seconds; }
  std::string to_string() const;
};

// Throws Error (naming --gpu-memory, --context, --chunk-size ...) when no plan fits.
Plan make_plan(const PlanInputs& in);

// Bytes of host RAM a new pool may take: MemAvailable (or the cgroup's headroom when
// less) minus a reserve of 1/32 of RAM, at least 2 GiB; -1 when unknown.
int64_t host_memory_available();
// The rule above on given figures (bytes; a cgroup limit <= 0 means none).
int64_t host_pool_allowance(int64_t mem_available, int64_t mem_total, int64_t cgroup_limit, int64_t cgroup_used);

}  // namespace headinfer
