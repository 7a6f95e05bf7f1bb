// The KV cache as one slab per (layer, KV head): K and V of that head, each
// [capacity, head_dim] contiguous in the KV dtype. A slab knows its home; the
// planner (later) decides homes, the executor reads and appends through here.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/backend.hpp"

namespace headinfer {

enum class Home { Device, Host };

struct Slab {
  void* k = nullptr;
  void* v = nullptr;
  Home home = Home::Device;
};

class KvStore {
 public:
  KvStore(Backend& backend, int n_layers, int n_kv_heads, int head_dim, DType kv_dtype, int64_t capacity);
  ~KvStore();
  KvStore(const KvStore&) = delete;
  KvStore& operator=(const KvStore&) = delete;

  Slab& slab(int layer, int kv_head) { return slabs_[static_cast<size_t>(layer) * n_kv_heads_ + kv_head]; }
  int64_t capacity() const { return capacity_; }
  // Grows every slab to hold at least `tokens` (keeping what they hold).
  void reserve(int64_t tokens);
  int64_t length() const { return length_; }  // tokens held (same for every slab)
  void set_length(int64_t n) { length_ = n; }
  DType kv_dtype() const { return kv_dtype_; }
  int head_dim() const { return head_dim_; }
  size_t row_bytes() const { return dtype_bytes(kv_dtype_, head_dim_); }
  size_t bytes() const;  // allocated bytes over all slabs

  // Byte pointer to token t of a slab's K or V.
  void* k_at(int layer, int kv_head, int64_t t) { return static_cast<uint8_t*>(slab(layer, kv_head).k) + t * row_bytes(); }
  void* v_at(int layer, int kv_head, int64_t t) { return static_cast<uint8_t*>(slab(layer, kv_head).v) + t * row_bytes(); }

 private:
  void allocate(std::vector<Slab>& slabs, int64_t capacity);
  void release(std::vector<Slab>& slabs);

  Backend& backend_;
  int n_layers_, n_kv_heads_, head_dim_;
  DType kv_dtype_;
  int64_t capacity_;
  int64_t length_ = 0;
  std::vector<Slab> slabs_;
};

}  // namespace headinfer
