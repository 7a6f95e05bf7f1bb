#include "kv/plan.hpp"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "common/units.hpp"
#include "headinfer/error.hpp"

namespace headinfer {
namespace {

constexpr int kMinChunk = 512, kMaxChunk = 16384;
// With every slab resident nothing streams, so the roofline's reason for a chunk is
// gone and a larger one is faster: fewer, larger attention calls. Up to the whole
// context, at most this many tokens: on the H200 a 128K prompt prefilled 2.8% faster
// in 64K chunks than in 10K ones, and 2.5% slower again in one 128K chunk (docs/gpu.md,
// 2026-12-04, second session).
constexpr int kMaxResidentChunk = 65536;

// That cap was measured when a chunk still attended every earlier copy-sized block in
// a call of its own; HEADINFER_RESIDENT_CHUNK_MAX (tokens, "128K") sets another for
// the A/B against one block over the whole context.
int64_t max_resident_chunk() {
  const char* e = std::getenv("HEADINFER_RESIDENT_CHUNK_MAX");
  if (e == nullptr || *e == '\0') return kMaxResidentChunk;
  const int64_t v = parse_tokens(e, "HEADINFER_RESIDENT_CHUNK_MAX");
  HI_CHECK(v >= 1 && v <= INT32_MAX, "HEADINFER_RESIDENT_CHUNK_MAX: " << e << " tokens, expected 1 to " << INT32_MAX);
  return v;
}

// With the earlier KV offloaded, a chunk of C tokens does about C * q_per_kv
// attention FLOPs per byte it moves (4 * head_dim FLOPs per key and query head over
// 2 * head_dim * 2 bytes per key). It hides the transfers once that passes the
// device's ridge point; 3x the ridge leaves room for imperfect overlap (the paper's
// 10K tokens for Llama-3-8B).
int roofline_chunk(const PlanInputs& in) {
  const double ridge = in.speeds.attn_tflops * 1e12 / (in.speeds.link_gbs * 1e9);
  const double c = 3.0 * ridge / in.cfg.q_per_kv();
  const int64_t step = c > 2048 ? 2048 : kMinChunk;
  const int64_t chunk = static_cast<int64_t>(std::ceil(c / static_cast<double>(step))) * step;
  return static_cast<int>(std::clamp<int64_t>(chunk, kMinChunk, kMaxChunk));
}

// Resident slabs spread evenly over the layers (the last heads of each), so every
// layer has both transfers and resident work to overlap them with. Every slab
// moves its whole KV each decode token and all are the same size, so any choice
// cuts the same transfer per byte; head policies will rank slabs when they differ.
KvSchedule schedule_for(const PlanInputs& in, int64_t block, int64_t resident, int n_buffers, int64_t buffer_bytes) {
  const ModelConfig& c = in.cfg;
  KvSchedule s;
  s.block_tokens = block;
  s.n_buffers = n_buffers;
  s.buffer_bytes = buffer_bytes;
  s.homes.assign(static_cast<size_t>(c.n_layers) * c.n_kv_heads, Home::Host);
  s.group_heads.assign(static_cast<size_t>(c.n_layers), 1);
  const int64_t row = static_cast<int64_t>(kv_row_bytes(c, in.kv_dtype));
  const int64_t blocks = (in.context + block - 1) / block;
  const int64_t head_tokens = buffer_bytes / (2 * row);  // head-tokens one buffer holds
  for (int l = 0; l < c.n_layers; ++l) {
    const int64_t r = resident / c.n_layers + (l < resident % c.n_layers ? 1 : 0);
    for (int h = c.n_kv_heads - static_cast<int>(r); h < c.n_kv_heads; ++h)
      s.homes[static_cast<size_t>(l) * c.n_kv_heads + h] = Home::Device;
    // Grouping: as many heads per fill as a buffer holds one block of, so each
    // block is one attention call over all of them (a call over several heads runs
    // at the rate of a resident run; one head per call lost ~10% of prefill). A
    // longer context makes more fills of the same size, never bigger ones.
    const int host = c.n_kv_heads - static_cast<int>(r);
    const int64_t per_block = head_tokens / block;
    s.group_heads[static_cast<size_t>(l)] = static_cast<int>(std::clamp<int64_t>(per_block, 1, std::max(1, host)));
  }
  // The pool grows in chunks of 64 MiB, or of the whole context's blocks when
  // that is less (small models then take no more host memory than they use).
  int64_t block_bytes = 0;
  for (int l = 0; l < c.n_layers; ++l) block_bytes += s.host_heads(c, l) * 2 * block * row;
  s.host_chunk_bytes = std::min(s.host_chunk_bytes, std::max<int64_t>(1, block_bytes * blocks));
  return s;
}

// One token block of every offloaded slab (0 when none is offloaded).
int64_t host_block_bytes(const PlanInputs& in, const KvSchedule& s) {
  const int64_t head_block = 2 * s.block_tokens * static_cast<int64_t>(kv_row_bytes(in.cfg, in.kv_dtype));
  int64_t block_bytes = 0;
  for (int l = 0; l < in.cfg.n_layers; ++l) block_bytes += s.host_heads(in.cfg, l) * head_block;
  return block_bytes;
}

// The host pool's unit of growth, as HostPool makes it: whole blocks.
int64_t host_pool_chunk_bytes(const PlanInputs& in, const KvSchedule& s) {
  const int64_t block_bytes = host_block_bytes(in, s);
  if (block_bytes == 0) return 0;
  return std::max<int64_t>(1, (s.host_chunk_bytes + block_bytes - 1) / block_bytes) * block_bytes;
}

int64_t host_pool_bytes(const PlanInputs& in, const KvSchedule& s) {
  const int64_t chunk = host_pool_chunk_bytes(in, s);
  if (chunk == 0) return 0;
  const int64_t per_chunk = chunk / host_block_bytes(in, s);
  const int64_t blocks = (in.context + s.block_tokens - 1) / s.block_tokens;
  return (blocks + per_chunk - 1) / per_chunk * chunk;
}

std::string breakdown(const PlanInputs& in, const DeviceFootprint& f, int64_t host_map) {
  std::ostringstream os;
  os << "weights " << format_bytes(in.weight_bytes) << " + resident KV " << format_bytes(f.resident_kv)
     << " + buffers " << format_bytes(f.buffers) << " + staging " << format_bytes(f.staging) << " + activations "
     << format_bytes(f.activations) << " + device overhead " << format_bytes(in.device_overhead);
  if (host_map > 0) os << " + pinned host mapping " << format_bytes(host_map);
  os << " = " << format_bytes(in.weight_bytes + f.total() + in.device_overhead + host_map);
  return os.str();
}

}  // namespace

OffloadMode parse_offload_mode(const std::string& text) {
  if (text == "auto") return OffloadMode::Auto;
  if (text == "all") return OffloadMode::All;
  if (text == "none") return OffloadMode::None;
  HI_FAIL("--offload: unknown mode '" << text << "' (expected auto, all or none)");
}

const char* offload_mode_name(OffloadMode m) {
  switch (m) {
    case OffloadMode::Auto: return "auto";
    case OffloadMode::All: return "all";
    case OffloadMode::None: return "none";
  }
  return "?";
}

DeviceSpeeds DeviceSpeeds::for_backend(const std::string& backend_name) {
  DeviceSpeeds s;
  if (backend_name.rfind("cpu", 0) == 0) {
    s.link_gbs = 10.0;   // a memcpy thread
    s.mem_gbs = 20.0;    // a few cores reading f32/bf16
    s.attn_tflops = 0.1;
    s.pinned_map_ratio = 0;  // the emulated device maps nothing
  }
  return s;
}

namespace {

// A number from a one-value file such as cgroup v2's memory.max; -1 for "max" or none.
int64_t read_limit_file(const char* path) {
  std::ifstream in(path);
  std::string text;
  if (!(in >> text) || text == "max") return -1;
  try {
    return std::stoll(text);
  } catch (...) {
    return -1;
  }
}

}  // namespace

int64_t host_pool_allowance(int64_t mem_available, int64_t mem_total, int64_t cgroup_limit, int64_t cgroup_used) {
  if (mem_available < 0) return -1;
  int64_t available = mem_available;
  // In a container the cgroup's limit binds before the machine's RAM does.
  if (cgroup_limit > 0 && cgroup_used >= 0) available = std::min(available, cgroup_limit - cgroup_used);
  // The pool is pinned and cannot be reclaimed, and the process still allocates
  // after the plan (the runtime's own buffers, the fill, the sampler): a pool sized
  // to the last byte of MemAvailable got the process killed by the kernel's OOM
  // killer on the GPU machine. Keep 1/32 of RAM (at least 2 GiB) free.
  const int64_t reserve = std::max<int64_t>(int64_t{2} << 30, std::max<int64_t>(mem_total, 0) / 32);
  return std::max<int64_t>(0, available - reserve);
}

int64_t host_memory_available() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  int64_t kib = 0;
  std::string unit;
  int64_t available = -1, total = -1;
  while (in >> key >> kib >> unit) {
    if (key == "MemTotal:") total = kib * 1024;
    if (key == "MemAvailable:") available = kib * 1024;
  }
  return host_pool_allowance(available, total, read_limit_file("/sys/fs/cgroup/memory.max"),
                             read_limit_file("/sys/fs/cgroup/memory.current"));
}

Plan make_plan(const PlanInputs& in) {
  const ModelConfig& c = in.cfg;
  HI_CHECK(in.context > 0, "--context must be positive, got " << in.context);
  HI_CHECK(in.speeds.link_gbs > 0, "--link-gbs must be positive, got " << in.speeds.link_gbs);
  HI_CHECK(in.chunk >= 0, "--chunk-size must be positive, got " << in.chunk);
  const int64_t budget = in.gpu_budget;
  HI_CHECK(budget < 0 || in.weight_bytes + in.device_overhead <= budget,
           "--gpu-memory " << format_bytes(budget) << " is too small: the weights alone take "
                           << format_bytes(in.weight_bytes) << " (+ " << format_bytes(in.device_overhead)
                           << " device overhead)");

  const int64_t row = static_cast<int64_t>(kv_row_bytes(c, in.kv_dtype));
  // Short contexts get shorter blocks (and so smaller buffers); past the copy-size
  // block, nothing depends on the context.
  int64_t block = default_block_tokens(static_cast<size_t>(row), in.min_copy_bytes);
  while (block > 16 && block / 2 >= in.context) block /= 2;
  // One buffer holds a block of a whole layer's heads: fixed, whatever the context.
  const int64_t buffer_bytes = int64_t{c.n_kv_heads} * 2 * block * row;
  // With every slab resident a block sizes nothing but the prefill's attention calls:
  // a chunk attends each earlier block in a call of its own, each merged into the
  // chunk's f32 output (2.5 GiB of traffic a layer at a 64K chunk). One block over the
  // whole context leaves two calls a chunk, the earlier keys and the chunk itself.
  int64_t whole_block = block;
  while (whole_block < in.context) whole_block *= 2;
  const int64_t total_slabs = int64_t{c.n_layers} * c.n_kv_heads;

  std::vector<int> chunks;
  if (in.chunk > 0) {
    chunks.push_back(in.chunk);
  } else {
    for (int ch = roofline_chunk(in); ch >= kMinChunk; ch /= 2) chunks.push_back(ch);
  }
  for (int& ch : chunks) ch = static_cast<int>(std::min<int64_t>(ch, in.context));
  // All-resident plans try larger chunks first, halving down to the roofline's.
  std::vector<int> resident_chunks;
  if (in.resident_may_grow())
    for (int64_t ch = std::min<int64_t>(in.context, max_resident_chunk()); ch > chunks.front(); ch /= 2)
      resident_chunks.push_back(static_cast<int>(ch));
  resident_chunks.insert(resident_chunks.end(), chunks.begin(), chunks.end());

  Plan p;
  p.in = in;
  // partial_pin: when the page tables of an all-pinned pool break the budget, pin
  // only the whole pool chunks that fit and leave the rest pageable.
  auto evaluate = [&](int chunk, int64_t resident, int n_buffers, bool partial_pin = false) {
    p.chunk = chunk;
    p.mlp_chunk = default_mlp_chunk(chunk);
    const bool grown = resident == total_slabs && in.resident_may_grow();
    p.schedule = schedule_for(in, grown ? whole_block : block, resident, n_buffers, buffer_bytes);
    p.gpu = engine_footprint(c, in.kv_dtype, p.schedule, in.context, p.chunk, p.mlp_chunk);
    p.host_bytes = host_pool_bytes(in, p.schedule);
    const double ratio = in.speeds.pinned_map_ratio;
    const int64_t engine = in.weight_bytes + p.gpu.total() + in.device_overhead;
    p.host_pinned = p.host_bytes;
    if (partial_pin && budget >= 0 && ratio > 0 && p.host_bytes > 0 &&
        engine + static_cast<int64_t>(static_cast<double>(p.host_bytes) * ratio) > budget && engine <= budget) {
      const int64_t chunk_bytes = host_pool_chunk_bytes(in, p.schedule);
      const auto room = static_cast<int64_t>(static_cast<double>(budget - engine) / ratio);
      p.host_pinned = std::min(p.host_bytes, room / chunk_bytes * chunk_bytes);
      p.schedule.pinned_limit = p.host_pinned;
    }
    p.host_map = static_cast<int64_t>(static_cast<double>(p.host_pinned) * ratio);
    p.gpu_total = engine + p.host_map;
    return budget < 0 || p.gpu_total <= budget;
  };

  bool fits = false;
  if (in.mode == OffloadMode::None || (in.mode == OffloadMode::Auto && budget < 0)) {
    for (int ch : resident_chunks)
      if ((fits = evaluate(ch, total_slabs, 2))) break;
    HI_CHECK(fits || in.mode == OffloadMode::Auto,
             "--gpu-memory " << format_bytes(budget) << " cannot hold every slab of a " << in.context
                             << "-token context (--offload none): " << breakdown(in, p.gpu, p.host_map)
                             << "; use --offload auto or a shorter --max-context");
  }
  // Auto: every slab resident at the roofline's chunk or a larger one, else offload.
  const size_t larger = resident_chunks.size() - chunks.size();
  for (size_t i = 0; !fits && in.mode == OffloadMode::Auto && i <= larger; ++i)
    fits = evaluate(resident_chunks[i], total_slabs, 2);
  if (!fits) {
    // The smallest plan first: every slab offloaded, then the largest chunk and
    // buffer count that fit. Still too big: the pinned pool's page tables are the
    // one part that grows with the context, so pin less of it (again the largest
    // chunk that fits that way).
    for (bool partial_pin : {false, true}) {
      for (int ch : chunks) {
        for (int nb : {3, 2})
          if ((fits = evaluate(ch, 0, nb, partial_pin))) break;
        if (fits) break;
      }
      if (fits) break;
    }
    HI_CHECK(fits, "--gpu-memory " << format_bytes(budget) << " is too small for the smallest plan (every slab "
                                   << "offloaded, a " << p.chunk << "-token chunk, 2 buffers): "
                                   << breakdown(in, p.gpu, p.host_map));
    if (in.mode == OffloadMode::Auto && p.schedule.pinned_limit < 0) {
      // Most resident slabs that still fit (the footprint grows with them).
      const int chunk = p.chunk, nb = p.schedule.n_buffers;
      int64_t lo = 0, hi = total_slabs - 1;
      while (lo < hi) {
        const int64_t mid = (lo + hi + 1) / 2;
        if (evaluate(chunk, mid, nb)) lo = mid;
        else hi = mid - 1;
      }
      evaluate(chunk, lo, nb);
    }
  }

  p.offloaded_slabs = p.schedule.offloaded_slabs();
  p.resident_slabs = total_slabs - p.offloaded_slabs;
  HI_CHECK(in.host_available < 0 || p.host_bytes <= in.host_available,
           "--context " << in.context << ": the offloaded KV needs " << format_bytes(p.host_bytes)
                        << " of host memory, only " << format_bytes(in.host_available) << " is available");
  if (in.host_backed_weights >= 0 && in.host_available >= 0) {
    const int64_t needed = p.gpu_total - in.host_backed_weights + p.host_bytes;
    HI_CHECK(needed <= in.host_available,
             "--context " << in.context << ": the CPU backend keeps the KV cache in host memory and needs "
                          << format_bytes(needed) << " more of it (KV, activations, fused weights), only "
                          << format_bytes(in.host_available) << " is available");
  }
  p.h2d_per_token = p.offloaded_slabs * 2 * row * in.context;
  p.d2h_per_token = p.offloaded_slabs * 2 * row;
  // The pageable share of the pool streams at the pageable rate.
  const double pageable_share =
      p.host_bytes > 0 ? static_cast<double>(p.host_bytes - p.host_pinned) / static_cast<double>(p.host_bytes) : 0.0;
  const double pageable_gbs = in.speeds.pageable_gbs > 0 ? in.speeds.pageable_gbs : in.speeds.link_gbs / 4;
  p.transfer_seconds = static_cast<double>(p.h2d_per_token) *
                       ((1 - pageable_share) / (in.speeds.link_gbs * 1e9) + pageable_share / (pageable_gbs * 1e9));
  p.compute_seconds = static_cast<double>(in.weight_bytes + p.resident_slabs * 2 * row * in.context) /
                      (in.speeds.mem_gbs * 1e9);
  return p;
}

}  // namespace headinfer
