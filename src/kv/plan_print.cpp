// Plan::to_string: the plan as `headinfer plan` prints it.
#include <cstdio>
#include <map>
#include <sstream>

#include "common/units.hpp"
#include "kv/plan.hpp"

namespace headinfer {
namespace {

std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

// "8 x32" for runs of equal values, in layer order: "4 x16, 3 x16".
std::string runs(const std::vector<int>& v) {
  std::ostringstream os;
  for (size_t i = 0; i < v.size();) {
    size_t j = i;
    while (j < v.size() && v[j] == v[i]) ++j;
    os << (i ? ", " : "") << v[i] << " x" << (j - i);
    i = j;
  }
  return os.str();
}

}  // namespace

std::string Plan::to_string() const {
  const ModelConfig& c = in.cfg;
  const int64_t row = static_cast<int64_t>(kv_row_bytes(c, in.kv_dtype));
  const int64_t slab = 2 * row * in.context;
  std::vector<int> per_layer_resident, groups;
  for (int l = 0; l < c.n_layers; ++l) {
    per_layer_resident.push_back(c.n_kv_heads - schedule.host_heads(c, l));
    groups.push_back(schedule.host_heads(c, l) ? schedule.group_heads[static_cast<size_t>(l)] : 0);
  }
  std::ostringstream os;
  os << "plan for " << (in.model_name.empty() ? "model" : in.model_name) << ": " << in.context << " tokens, "
     << "--gpu-memory " << (in.gpu_budget < 0 ? std::string("unlimited") : format_bytes(in.gpu_budget))
     << ", --offload " << offload_mode_name(in.mode) << "\n";
  os << "  model        " << c.n_layers << " layers x " << c.n_kv_heads << " KV heads = " << c.n_layers * c.n_kv_heads
     << " slabs of " << format_bytes(slab) << " (" << dtype_name(in.kv_dtype) << ", head_dim " << c.head_dim
     << ", " << c.q_per_kv() << " query heads per KV head)\n";
  os << "  chunk        " << chunk << " tokens"
     << (in.chunk > 0                                     ? " (--chunk-size)"
         : offloaded_slabs == 0 && in.resident_may_grow() ? " (all resident: the largest that fits)"
                                                          : " (roofline)")
     << ", MLP in passes of " << mlp_chunk << "\n";
  os << "  blocks       " << schedule.block_tokens << " tokens (" << format_bytes(2 * row * schedule.block_tokens)
     << " of K+V per head)"
     << (offloaded_slabs == 0 && in.resident_may_grow() ? ": all resident, one over the whole context"
                                                        : ": attention calls, host layout and copies")
     << "\n";
  os << "  resident     " << resident_slabs << " slabs (" << format_bytes(gpu.resident_kv)
     << " on the device), per layer: " << runs(per_layer_resident) << "\n";
  os << "  offloaded    " << offloaded_slabs << " slabs (" << format_bytes(host_bytes) << " host pool"
     << (host_pinned < host_bytes ? ": " + format_bytes(host_pinned) + " pinned, " +
                                        format_bytes(host_bytes - host_pinned) + " pageable to fit --gpu-memory"
                                  : std::string())
     << ")\n";
  if (offloaded_slabs > 0) {
    os << "  groups       heads per group per layer: " << runs(groups) << "\n";
    os << "  buffers      " << schedule.n_buffers << " x " << format_bytes(schedule.buffer_bytes)
       << " (fixed: longer groups stream through in blocks)\n";
  }
  os << "  gpu memory   weights " << format_bytes(in.weight_bytes) << " + resident KV " << format_bytes(gpu.resident_kv)
     << " + buffers " << format_bytes(gpu.buffers) << " + staging " << format_bytes(gpu.staging)
     << " + activations " << format_bytes(gpu.activations) << " + overhead " << format_bytes(in.device_overhead)
     << (host_map > 0 ? " + pinned host mapping " + format_bytes(host_map) : std::string()) << "\n               = " << format_bytes(gpu_total) << " predicted"
     << (in.gpu_budget >= 0 ? " of " + format_bytes(in.gpu_budget) : std::string()) << "\n";
  os << "  decode/token H2D " << format_bytes(h2d_per_token) << ", D2H " << format_bytes(d2h_per_token) << "; "
     << fmt("%.3f", seconds_per_token()) << " s predicted (transfer " << fmt("%.3f", transfer_seconds) << " s at "
     << fmt("%.1f", in.speeds.link_gbs) << " GB/s"
     << (host_pinned < host_bytes
             ? ", the pageable part at " +
                   fmt("%.1f", in.speeds.pageable_gbs > 0 ? in.speeds.pageable_gbs : in.speeds.link_gbs / 4) + " GB/s"
             : std::string())
     << " + weights and resident KV " << fmt("%.3f", compute_seconds)
     << " s at " << fmt("%.0f", in.speeds.mem_gbs) << " GB/s)\n";
  if (host_pinned < host_bytes) {
    // The trade the budget forced: what pinning the whole pool would cost and give.
    const int64_t full_map = static_cast<int64_t>(static_cast<double>(host_bytes) * in.speeds.pinned_map_ratio);
    const double pinned_s = static_cast<double>(h2d_per_token) / (in.speeds.link_gbs * 1e9) + compute_seconds;
    os << "  pinning      the whole pool would need --gpu-memory " << format_bytes(gpu_total - host_map + full_map)
       << " (its page tables take " << format_bytes(full_map) << ") and decode at " << fmt("%.3f", pinned_s)
       << " s/token\n";
  }
  return os.str();
}

}  // namespace headinfer
