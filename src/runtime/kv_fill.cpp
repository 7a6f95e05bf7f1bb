#include "runtime/kv_fill.hpp"

#include <algorithm>
#include <cstring>
#include <thread>
#include <vector>

#include "common/half.hpp"
#include "headinfer/error.hpp"

namespace headinfer {
namespace {

// xorshift64 state to a float in [-2, 2).
inline float next_value(uint64_t& x) {
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return static_cast<float>(static_cast<int32_t>(x)) * (1.0f / 1073741824.0f);
}

// The store's KV is written behind its back: the Executor offers it read-only
// because nothing but a forward() may change it, and this fill stands in for one.
KvStore& kv_of(Executor& exec) { return const_cast<KvStore&>(exec.kv()); }

}  // namespace

void fill_random_values(void* dst, size_t bytes, DType dtype, uint64_t seed) {
  HI_CHECK(dtype == DType::F32 || dtype == DType::F16 || dtype == DType::BF16,
           "synthetic KV fill: KV dtype " << dtype_name(dtype) << " is not supported, expected F32, F16 or BF16");
  const size_t elem = dtype == DType::F32 ? 4 : 2;
  const size_t n = bytes / elem;
  const int n_threads = static_cast<int>(std::max(1u, std::min(16u, std::thread::hardware_concurrency())));
  std::vector<std::thread> ts;
  for (int t = 0; t < n_threads; ++t) {
    ts.emplace_back([=] {
      const size_t b = n * t / n_threads, e = n * (t + 1) / n_threads;
      uint64_t x = seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(t) * 0xBF58476D1CE4E5B9ull + 1;
      if (dtype == DType::F32) {
        float* p = static_cast<float*>(dst);
        for (size_t i = b; i < e; ++i) p[i] = next_value(x);
      } else {
        uint16_t* p = static_cast<uint16_t*>(dst);
        for (size_t i = b; i < e; ++i)
          p[i] = dtype == DType::BF16 ? f32_to_bf16(next_value(x)) : f32_to_f16(next_value(x));
      }
    });
  }
  for (auto& t : ts) t.join();
}

void synthetic_kv_fill(Backend& be, Executor& exec, const ModelConfig& cfg, int64_t context, uint64_t seed) {
  KvStore& kv = kv_of(exec);
  HI_CHECK(context >= 0 && context <= kv.capacity(),
           "synthetic KV fill: context " << context << " exceeds the KV capacity of " << kv.capacity());
  const size_t side = kv.row_bytes() * static_cast<size_t>(context);
  std::vector<uint8_t> buf;
  for (int l = 0; l < cfg.n_layers; ++l)
    for (int h = 0; h < cfg.n_kv_heads; ++h) {
      if (kv.slab(l, h).home != Home::Device || side == 0) continue;
      if (buf.size() < side) {
        buf.resize(side);
        fill_random_values(buf.data(), side, kv.kv_dtype(), seed);
      }
      be.upload(kv.k_at(l, h, 0), buf.data(), side);
      be.upload(kv.v_at(l, h, 0), buf.data(), side);
    }
  // Host blocks: the whole block of every layer is one range from layer 0's offset.
  const int64_t B = kv.block_tokens();
  const int64_t blocks = (context + B - 1) / B;
  size_t block_bytes = 0;
  for (int l = 0; l < cfg.n_layers; ++l)
    block_bytes += static_cast<size_t>(kv.host_heads(l)) * kv.host_head_bytes();
  if (block_bytes > 0)
    for (int64_t b = 0; b < blocks; ++b)
      fill_random_values(kv.host_block(0, b), block_bytes, kv.kv_dtype(), seed + 1 + static_cast<uint64_t>(b));
  be.synchronize();
  kv.set_length(context);
}

void rewind_kv(Executor& exec, int64_t context) {
  HI_CHECK(context >= 0 && context <= exec.position(),
           "rewind_kv: context " << context << " is past the " << exec.position() << " tokens held");
  kv_of(exec).set_length(context);
}

}  // namespace headinfer
