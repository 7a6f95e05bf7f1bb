// How the KV cache is split between device and host and how the offloaded part
// streams: the part of a Plan the KvStore and the Executor act on.
//
// The math never depends on it: every KV head attends to its earlier context in
// token blocks of `block_tokens` (one attention call per block, merged in block
// order by log-sum-exp; the block that holds the chunk's start is attended together
// with the chunk). Homes, groups and buffers only decide where a block's bytes come
// from and when, so any schedule gives the same bits (ARCHITECTURE invariant 1).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "format/tensor.hpp"
#include "model/model_config.hpp"

namespace headinfer {

enum class Home { Device, Host };

struct KvSchedule {
  // Tokens per block: the unit of attention calls, of host layout and of copies.
  int64_t block_tokens = 0;
  std::vector<Home> homes;       // [layer * n_kv_heads + kv_head]
  std::vector<int> group_heads;  // per layer: offloaded heads that stream together
  int n_buffers = 2;             // ping-pong buffers (fills issued n_buffers - 1 ahead)
  int64_t buffer_bytes = 0;      // each; fixed, whatever the context
  // The host pool grows in chunks of at least this many bytes (whole blocks).
  int64_t host_chunk_bytes = int64_t{64} << 20;
  // Bytes of the host pool that are pinned (-1: all of it). Chunks past this are
  // pageable: the driver maps pinned memory into the GPU's page tables at 1/512 of
  // its size, which a tight budget at millions of tokens cannot pay; pageable chunks
  // cost nothing there and copy slower. Like homes, it moves no bit.
  int64_t pinned_limit = -1;

  // Everything on the device, one block per ~4 MiB of a head's K+V.
  static KvSchedule all_resident(const ModelConfig& cfg, DType kv_dtype);

  Home home(const ModelConfig& cfg, int layer, int kv_head) const {
    return homes[static_cast<size_t>(layer) * cfg.n_kv_heads + kv_head];
  }
  int host_heads(const ModelConfig& cfg, int layer) const;  // offloaded heads of a layer
  int64_t offloaded_slabs() const;
  // Throws Error naming the field when the schedule does not fit the model.
  void validate(const ModelConfig& cfg, DType kv_dtype) const;
};

// Bytes of one KV row (one token of one head's K or V).
inline size_t kv_row_bytes(const ModelConfig& cfg, DType kv_dtype) { return dtype_bytes(kv_dtype, cfg.head_dim); }

// Keys per split of a decode step's attention (docs/offload.md "Decode"): a power of
// two dividing block_tokens, about capacity / 32 but at least 128 (as far as the
// block allows), so a head's keys make about 32 splits until a split is a whole block.
// Like block_tokens it is part of the math: decode bits depend on it.
int64_t decode_split_tokens(int64_t capacity, int64_t block_tokens);

// Block size whose K+V of one head moves in one copy of at least `min_copy_bytes`
// (a power of two, 16 .. 65536 tokens).
int64_t default_block_tokens(size_t row_bytes, int64_t min_copy_bytes = int64_t{4} << 20);

}  // namespace headinfer
