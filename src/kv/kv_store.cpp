#include "kv/kv_store.hpp"

#include "headinfer/error.hpp"

namespace headinfer {

KvStore::KvStore(Backend& backend, int n_layers, int n_kv_heads, int head_dim, DType kv_dtype, int64_t capacity)
    : backend_(backend), n_layers_(n_layers), n_kv_heads_(n_kv_heads), head_dim_(head_dim), kv_dtype_(kv_dtype),
      capacity_(capacity) {
  HI_CHECK(capacity > 0, "kv cache: capacity must be positive, got " << capacity);
  allocate(slabs_, capacity);
}

KvStore::~KvStore() { release(slabs_); }

void KvStore::allocate(std::vector<Slab>& slabs, int64_t capacity) {
  slabs.assign(static_cast<size_t>(n_layers_) * n_kv_heads_, Slab{});
  const size_t bytes = row_bytes() * static_cast<size_t>(capacity);
  try {
    for (Slab& s : slabs) {
      s.k = backend_.alloc(bytes);
      s.v = backend_.alloc(bytes);
    }
  } catch (...) {
    release(slabs);
    throw;
  }
}

void KvStore::release(std::vector<Slab>& slabs) {
  for (Slab& s : slabs) {
    if (s.k) backend_.free(s.k);
    if (s.v) backend_.free(s.v);
    s = Slab{};
  }
}

void KvStore::reserve(int64_t tokens) {
  if (tokens <= capacity_) return;
  std::vector<Slab> grown;
  allocate(grown, tokens);
  const size_t used = row_bytes() * static_cast<size_t>(length_);
  for (size_t i = 0; i < slabs_.size(); ++i) {
    if (used) {
      backend_.copy(grown[i].k, slabs_[i].k, used);
      backend_.copy(grown[i].v, slabs_[i].v, used);
    }
    grown[i].home = slabs_[i].home;
  }
  release(slabs_);
  slabs_ = std::move(grown);
  capacity_ = tokens;
}

size_t KvStore::bytes() const { return slabs_.size() * 2 * row_bytes() * static_cast<size_t>(capacity_); }

}  // namespace headinfer
