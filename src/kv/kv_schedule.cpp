#include "kv/kv_schedule.hpp"

#include <algorithm>
#include <cstdlib>

#include "headinfer/error.hpp"

namespace headinfer {

int64_t default_block_tokens(size_t row_bytes, int64_t min_copy_bytes) {
  int64_t b = 16;
  while (b < 65536 && b * 2 * static_cast<int64_t>(row_bytes) < min_copy_bytes) b *= 2;
  return b;
}

int64_t decode_split_tokens(int64_t capacity, int64_t block_tokens) {
  HI_CHECK(block_tokens > 0, "decode splits: block_tokens must be positive, got " << block_tokens);
  // About 32 splits per head: the power of two nearest capacity / 32 (doubling while
  // twice it is at most capacity / 22, 22 ~ 32 / sqrt 2), at least 128 keys. Measured
  // on the H200 with the tensor-core decode kernel (Llama-3-8B, all resident): at 128K,
  // 4096-key splits (32 a head) decode in 9.12 ms against 9.21 for 2048 and 9.48 for
  // 1024; at 32K, 1024 (32 a head) in 5.95 against 6.13 for 512 and 6.53 for 256.
  // Fewer, longer splits amortise each block's pipeline fill and merge. At 4K, once the
  // first tiles are copied before the grid dependency wait, 128 (33 a head, two blocks
  // per SM) in 4.83 ms against 4.93 for 256 and 5.40 for 1024.
  // HEADINFER_DECODE_SPLIT_MIN (a power of two) replaces the 128, for benchmarks.
  int64_t want = 128;
  if (const char* e = std::getenv("HEADINFER_DECODE_SPLIT_MIN")) {
    const long long v = std::atoll(e);
    if (v >= 1 && (v & (v - 1)) == 0) want = v;
  }
  while (want * 2 * 22 <= capacity) want *= 2;
  // Splits must tile every block exactly: the largest power of two dividing it.
  const int64_t block_pow2 = block_tokens & -block_tokens;
  return std::min(want, block_pow2);
}

KvSchedule KvSchedule::all_resident(const ModelConfig& cfg, DType kv_dtype) {
  KvSchedule s;
  s.block_tokens = default_block_tokens(kv_row_bytes(cfg, kv_dtype));
  s.homes.assign(static_cast<size_t>(cfg.n_layers) * cfg.n_kv_heads, Home::Device);
  s.group_heads.assign(static_cast<size_t>(cfg.n_layers), 1);
  s.n_buffers = 2;
  s.buffer_bytes = 0;
  return s;
}

int KvSchedule::host_heads(const ModelConfig& cfg, int layer) const {
  int n = 0;
  for (int h = 0; h < cfg.n_kv_heads; ++h) n += home(cfg, layer, h) == Home::Host;
  return n;
}

int64_t KvSchedule::offloaded_slabs() const {
  return std::count(homes.begin(), homes.end(), Home::Host);
}

void KvSchedule::validate(const ModelConfig& cfg, DType kv_dtype) const {
  HI_CHECK(block_tokens > 0, "kv schedule: block_tokens must be positive, got " << block_tokens);
  HI_CHECK(homes.size() == static_cast<size_t>(cfg.n_layers) * cfg.n_kv_heads,
           "kv schedule: homes has " << homes.size() << " entries, the model has " << cfg.n_layers << " x "
                                     << cfg.n_kv_heads << " slabs");
  HI_CHECK(group_heads.size() == static_cast<size_t>(cfg.n_layers),
           "kv schedule: group_heads has " << group_heads.size() << " entries for " << cfg.n_layers << " layers");
  HI_CHECK(pinned_limit >= -1, "kv schedule: pinned_limit must be -1 (all) or a byte count, got " << pinned_limit);
  if (offloaded_slabs() == 0) return;
  HI_CHECK(n_buffers >= 2, "kv schedule: n_buffers must be at least 2 (ping-pong), got " << n_buffers);
  const int64_t head_block = 2 * block_tokens * static_cast<int64_t>(kv_row_bytes(cfg, kv_dtype));
  for (int l = 0; l < cfg.n_layers; ++l) {
    const int g = group_heads[static_cast<size_t>(l)];
    if (host_heads(cfg, l) == 0) continue;
    HI_CHECK(g >= 1 && g <= cfg.n_kv_heads,
             "kv schedule: group_heads of layer " << l << " is " << g << ", expected 1.." << cfg.n_kv_heads);
    const int64_t need = std::min(g, host_heads(cfg, l)) * head_block;
    HI_CHECK(buffer_bytes >= need, "kv schedule: buffer_bytes " << buffer_bytes << " cannot hold one block of "
                                                                << std::min(g, host_heads(cfg, l))
                                                                << " heads of layer " << l << " (" << need
                                                                << " bytes)");
  }
}

}  // namespace headinfer
