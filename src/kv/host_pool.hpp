// Host memory of the offloaded slabs: a list of chunks, each a whole number of
// token blocks, allocated through the backend (pinned on a GPU) up to a pinned
// limit and as plain pageable memory past it. It grows with the context a chunk at
// a time and never moves what it holds, so copies in flight stay valid and a
// request never pays to set up memory an earlier one set up.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "backend/backend.hpp"

namespace headinfer {

class HostPool {
 public:
  // block_bytes: one token block of every offloaded slab of every layer.
  // pinned_limit: bytes that may be pinned (-1: all); whole chunks past it are pageable.
  HostPool(Backend& backend, size_t block_bytes, int64_t min_chunk_bytes, int64_t pinned_limit = -1);
  ~HostPool();
  HostPool(const HostPool&) = delete;
  HostPool& operator=(const HostPool&) = delete;

  // Makes blocks [0, blocks) addressable.
  void grow_to(int64_t blocks);
  int64_t blocks() const { return static_cast<int64_t>(chunks_.size()) * blocks_per_chunk_; }
  uint8_t* block(int64_t b) const {
    return chunks_[static_cast<size_t>(b / blocks_per_chunk_)] + static_cast<size_t>(b % blocks_per_chunk_) * block_bytes_;
  }
  size_t bytes() const { return chunks_.size() * chunk_bytes(); }
  size_t pinned_bytes() const { return pinned_chunks_ * chunk_bytes(); }
  size_t chunk_bytes() const { return block_bytes_ * static_cast<size_t>(blocks_per_chunk_); }

 private:
  Backend& backend_;
  size_t block_bytes_;
  int64_t blocks_per_chunk_;
  int64_t pinned_limit_;
  std::vector<uint8_t*> chunks_;  // the pinned ones first
  size_t pinned_chunks_ = 0;
};

}  // namespace headinfer
