// The KV cache as one slab per (layer, KV head), each with a home.
//
// Device slabs (resident) hold K and V as [capacity, head_dim] each, contiguous; a
// layer's resident slabs share one K and one V allocation, in head order at a fixed
// stride (capacity rows), so attention can take several heads in one call.
// Host slabs live in the HostPool, laid out per token block as
//   block b: [layer][offloaded head j][K|V][token in block][head_dim]
// so one block of a group of adjacent offloaded heads of a layer is one contiguous
// range (one copy), and growing the context adds blocks without moving any.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "backend/backend.hpp"
#include "kv/host_pool.hpp"
#include "kv/kv_schedule.hpp"
#include "model/model_config.hpp"

namespace headinfer {

struct Slab {
  void* k = nullptr;  // device slabs only
  void* v = nullptr;
  Home home = Home::Device;
  int host_index = -1;  // host slabs: position among the layer's offloaded heads
};

class KvStore {
 public:
  KvStore(Backend& backend, const ModelConfig& cfg, DType kv_dtype, const KvSchedule& schedule, int64_t capacity);
  ~KvStore();
  KvStore(const KvStore&) = delete;
  KvStore& operator=(const KvStore&) = delete;

  const Slab& slab(int layer, int kv_head) const { return slabs_[static_cast<size_t>(layer) * n_kv_heads_ + kv_head]; }
  const KvSchedule& schedule() const { return schedule_; }
  int64_t capacity() const { return capacity_; }
  // Grows every slab to hold at least `tokens` (keeping what they hold).
  void reserve(int64_t tokens);
  int64_t length() const { return length_; }  // tokens held (same for every slab)
  void set_length(int64_t n) { length_ = n; }
  DType kv_dtype() const { return kv_dtype_; }
  int head_dim() const { return head_dim_; }
  size_t row_bytes() const { return dtype_bytes(kv_dtype_, head_dim_); }
  int64_t block_tokens() const { return schedule_.block_tokens; }

  // Device slabs: elements from one resident head's K (or V) to the next resident
  // head's (adjacent resident heads of a layer only).
  int64_t device_head_stride() const { return capacity_ * head_dim_; }
  // Device slabs: byte pointer to token t of K or V.
  void* k_at(int layer, int kv_head, int64_t t) const { return at(slab(layer, kv_head).k, t); }
  void* v_at(int layer, int kv_head, int64_t t) const { return at(slab(layer, kv_head).v, t); }

  // Host slabs. The layer's offloaded heads in order; block b of head j holds K at
  // host_block(layer, b) + j * host_head_bytes() and V row_bytes * block_tokens after.
  int host_heads(int layer) const { return static_cast<int>(host_order_[static_cast<size_t>(layer)].size()); }
  int host_head(int layer, int j) const { return host_order_[static_cast<size_t>(layer)][static_cast<size_t>(j)]; }
  uint8_t* host_block(int layer, int64_t block) const {
    return pool_->block(block) + layer_offset_[static_cast<size_t>(layer)];
  }
  size_t host_head_bytes() const { return 2 * row_bytes() * static_cast<size_t>(block_tokens()); }
  int max_host_heads() const;

  size_t device_bytes() const;  // bytes of the device slabs
  size_t host_bytes() const { return pool_ ? pool_->bytes() : 0; }
  size_t host_pinned_bytes() const { return pool_ ? pool_->pinned_bytes() : 0; }

 private:
  void* at(void* base, int64_t t) const { return static_cast<uint8_t*>(base) + t * row_bytes(); }
  void allocate_device(std::vector<Slab>& slabs, int64_t capacity);
  void release_device(std::vector<Slab>& slabs);
  int64_t blocks_for(int64_t tokens) const { return (tokens + block_tokens() - 1) / block_tokens(); }

  Backend& backend_;
  int n_layers_, n_kv_heads_, head_dim_;
  DType kv_dtype_;
  KvSchedule schedule_;
  int64_t capacity_ = 0;
  int64_t length_ = 0;
  std::vector<Slab> slabs_;
  std::vector<std::vector<int>> host_order_;  // per layer: kv heads of the host slabs
  std::vector<size_t> layer_offset_;          // per layer: offset inside a host block
  std::unique_ptr<HostPool> pool_;
};

}  // namespace headinfer
