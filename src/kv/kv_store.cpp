#include "kv/kv_store.hpp"

#include <algorithm>

#include "headinfer/error.hpp"

namespace headinfer {

KvStore::KvStore(Backend& backend, const ModelConfig& cfg, DType kv_dtype, const KvSchedule& schedule,
                 int64_t capacity)
    : backend_(backend), n_layers_(cfg.n_layers), n_kv_heads_(cfg.n_kv_heads), head_dim_(cfg.head_dim),
      kv_dtype_(kv_dtype), schedule_(schedule) {
  HI_CHECK(capacity > 0, "kv cache: capacity must be positive, got " << capacity);
  schedule_.validate(cfg, kv_dtype);
  slabs_.assign(static_cast<size_t>(n_layers_) * n_kv_heads_, Slab{});
  host_order_.resize(static_cast<size_t>(n_layers_));
  size_t block_bytes = 0;
  for (int l = 0; l < n_layers_; ++l) {
    layer_offset_.push_back(block_bytes);
    for (int h = 0; h < n_kv_heads_; ++h) {
      Slab& s = slabs_[static_cast<size_t>(l) * n_kv_heads_ + h];
      s.home = schedule_.home(cfg, l, h);
      if (s.home == Home::Host) {
        s.host_index = static_cast<int>(host_order_[static_cast<size_t>(l)].size());
        host_order_[static_cast<size_t>(l)].push_back(h);
        block_bytes += host_head_bytes();
      }
    }
  }
  if (block_bytes > 0) pool_ = std::make_unique<HostPool>(backend_, block_bytes, schedule_.host_chunk_bytes, schedule_.pinned_limit);
  allocate_device(slabs_, capacity);
  try {
    if (pool_) pool_->grow_to(blocks_for(capacity));
  } catch (...) {  // no destructor runs for a half-made store
    release_device(slabs_);
    throw;
  }
  capacity_ = capacity;
}

KvStore::~KvStore() {
  // Copies into or out of the slabs may still be in flight.
  backend_.synchronize();
  release_device(slabs_);
}

int KvStore::max_host_heads() const {
  int m = 0;
  for (int l = 0; l < n_layers_; ++l) m = std::max(m, host_heads(l));
  return m;
}

void KvStore::allocate_device(std::vector<Slab>& slabs, int64_t capacity) {
  const size_t bytes = row_bytes() * static_cast<size_t>(capacity);
  try {
    for (int l = 0; l < n_layers_; ++l) {
      Slab* layer = &slabs[static_cast<size_t>(l) * n_kv_heads_];
      int resident = 0;
      for (int h = 0; h < n_kv_heads_; ++h) resident += layer[h].home == Home::Device;
      if (resident == 0) continue;
      auto* k = static_cast<uint8_t*>(backend_.alloc(bytes * resident));
      uint8_t* v = nullptr;
      try {
        v = static_cast<uint8_t*>(backend_.alloc(bytes * resident));
      } catch (...) {
        backend_.free(k);
        throw;
      }
      for (int h = 0, i = 0; h < n_kv_heads_; ++h) {
        if (layer[h].home != Home::Device) continue;
        layer[h].k = k + bytes * i;
        layer[h].v = v + bytes * i;
        ++i;
      }
    }
  } catch (...) {
    release_device(slabs);
    throw;
  }
}

void KvStore::release_device(std::vector<Slab>& slabs) {
  // A layer's first resident slab holds the start of its allocations.
  for (int l = 0; l < n_layers_; ++l) {
    bool first = true;
    for (int h = 0; h < n_kv_heads_; ++h) {
      Slab& s = slabs[static_cast<size_t>(l) * n_kv_heads_ + h];
      if (first && s.k) {
        backend_.free(s.k);
        if (s.v) backend_.free(s.v);
        first = false;
      }
      s.k = s.v = nullptr;
    }
  }
}

void KvStore::reserve(int64_t tokens) {
  if (tokens <= capacity_) return;
  // Host blocks first: they never move, and failing here leaves the store as it was.
  if (pool_) pool_->grow_to(blocks_for(tokens));
  std::vector<Slab> grown = slabs_;
  for (Slab& s : grown) s.k = s.v = nullptr;
  allocate_device(grown, tokens);
  backend_.synchronize();
  const size_t used = row_bytes() * static_cast<size_t>(length_);
  for (size_t i = 0; i < slabs_.size(); ++i) {
    if (slabs_[i].home != Home::Device || used == 0) continue;
    backend_.copy(grown[i].k, slabs_[i].k, used);
    backend_.copy(grown[i].v, slabs_[i].v, used);
  }
  release_device(slabs_);
  slabs_ = std::move(grown);
  capacity_ = tokens;
}

size_t KvStore::device_bytes() const {
  size_t n = 0;
  for (const Slab& s : slabs_) n += s.home == Home::Device ? 2 * row_bytes() * static_cast<size_t>(capacity_) : 0;
  return n;
}

}  // namespace headinfer
