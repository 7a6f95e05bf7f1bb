// One layer's attention over the KV cache, head by head and block by block, with
// the offloaded slabs streaming through fixed-size ping-pong buffers.
//
// Per forward (a chunk, or one decode token at position pos0):
//   - the new K/V go to their slab's home: a device write, or a staging buffer then
//     an async D2H append of just those rows (host slabs are never sent back whole);
//   - a chunk (n > 1): every head attends to its earlier tokens block by block (see
//     kv_schedule.hpp), one call per block merged in block order;
//   - a decode step (n == 1): every head's keys are cut at positions that are
//     multiples of the split size S (decode_split_tokens); each split's partial
//     result goes to its slot (position / S) of one partials buffer, and one combine
//     per layer merges the slots in order. A resident head is one call over all its
//     keys, an offloaded one a call per fill; both hand the backend the same piece
//     boundaries inside every split (block starts are split starts; the partly
//     filled last block and the new token are pieces of their own), so each slot
//     gets the same bits whatever the head's home;
//   - resident blocks are read in place, offloaded ones arrive by async H2D into a
//     ping-pong buffer, a group of heads and some blocks per fill, issued
//     n_buffers - 1 fills ahead (across layers), ordered by events:
//       H2D:     wait(consumed[b]) -> copies -> record(filled[b])
//       compute: wait(filled[b])   -> attention over the fill -> record(consumed[b])
//       D2H:     wait(staged[s])   -> append copies -> record(appended[s])
//   - the next forward's fills wait for this forward's appends.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "backend/backend.hpp"
#include "kv/kv_store.hpp"
#include "model/model_config.hpp"

namespace headinfer {

struct TransferStats {
  int64_t h2d_bytes = 0, d2h_bytes = 0;
  int64_t h2d_copies = 0, d2h_copies = 0;
};

// The QKV projection, handed to LayerAttention so it runs together with RoPE and the
// K/V store (Backend::matmul_rope_store_kv): x rows of x_dtype through w (+ bias).
struct QkvProjection {
  const void* x = nullptr;
  DType x_dtype = DType::F32;
  const Mat* w = nullptr;
  const Mat* bias = nullptr;
};

// A layer's projections (after RoPE, or with `rope` to apply): token t's q, k and v rows (n_heads * head_dim,
// n_kv_heads * head_dim and n_kv_heads * head_dim floats) at q, k and v + t * stride
// (the fused [q | k | v] rows); out rows are n_heads * head_dim floats, packed.
struct LayerQkv {
  const float* q = nullptr;
  const float* k = nullptr;
  const float* v = nullptr;
  int64_t stride = 0;
  float* out = nullptr;
  // When set: q and k are not rotated yet; this RoPE (over their heads) runs together
  // with the store of the new K/V, before any attention.
  const RopeArgs* rope = nullptr;
  // The rows whose attention is wanted: the forward's last `queries` (0: all of them);
  // the K/V of every row are stored and attended to all the same. Their output rows
  // are where they would be among all (out + row * n_heads * head_dim).
  int queries = 0;
  // Optional: where the result may go as rows of the KV dtype instead (laid out as out),
  // for a backend whose next GEMM takes them so (AttnArgs::out_rows). run() says
  // whether it went there.
  void* out_rows = nullptr;
  // When set (with rope): q, k and v are not computed yet; run() projects them into
  // rope->x first (the fused [q | k | v] rows), with the rotation and the store.
  const QkvProjection* proj = nullptr;
};

class LayerAttention {
 public:
  LayerAttention(Backend& backend, KvStore& kv, const ModelConfig& cfg, int max_chunk);
  ~LayerAttention();
  LayerAttention(const LayerAttention&) = delete;
  LayerAttention& operator=(const LayerAttention&) = delete;

  // Plans the fills of a forward over n tokens at pos0 and issues the first ones.
  void begin(int64_t pos0, int n);
  // True when the result went to io.out_rows (a chunk with no earlier keys whose heads
  // are all resident: one call over every head), false when to io.out.
  bool run(int layer, const LayerQkv& io);
  void end();
  const TransferStats& stats() const { return stats_; }

 private:
  struct Fill {
    int layer, j0, heads;
    int64_t b0, blocks;
  };
  void release();
  void issue_through(size_t fill);
  void store_new_kv(int layer, const LayerQkv& io);
  // A run of adjacent KV heads [head, head + heads) with the same home, attended in
  // one call: their K/V sit at a fixed stride (resident slabs, a fill's buffer, the
  // staging area), and their query rows are adjacent.
  struct HeadRun {
    int head, heads;
  };
  // Runs of adjacent heads among `heads` (ascending KV head ids).
  static void head_runs(const std::vector<int>& heads, std::vector<HeadRun>& runs);
  // Attention of a run over block b (tokens of it before pos0; K/V of its first head
  // at k, v, the others `stride` elements apart), with the chunk when b holds pos0.
  // again: the call right before was this run's too (AttnArgs::q_unchanged).
  void attend_block(int layer, HeadRun r, int64_t b, const void* k, const void* v, int64_t stride,
                    const LayerQkv& io, bool again);
  void attend_chunk_only(int layer, HeadRun r, const LayerQkv& io);
  void attend(HeadRun r, AttnArgs& a, bool first, const LayerQkv& io, bool again = false, bool to_rows = false);
  // For each of the layer's fills, once its copies have landed: fn(fill, run, k, stride)
  // per run of adjacent heads in it (k: the run's first head in the fill's first block;
  // block i is i * fill.heads host head blocks further), then the buffer is released.
  template <typename F>
  void for_each_fill_run(int layer, F fn);
  // Decode (n == 1): per-split partials of every head, then one combine.
  void run_decode(int layer, const LayerQkv& io);
  AttnArgs& decode_args(HeadRun r, const LayerQkv& io);
  void alloc_partials(int64_t slots);
  void free_partials();
  KvPiece chunk_piece(int layer, HeadRun r) const;
  int64_t block_tokens_before(int64_t b) const { return std::min(B_, pos0_ - b * B_); }

  Backend& be_;
  KvStore& kv_;
  ModelConfig cfg_;
  int max_chunk_;
  int64_t B_;
  size_t row_;
  std::vector<void*> buffers_;
  std::vector<Event> filled_, consumed_;
  void* staging_[2] = {nullptr, nullptr};
  Event staged_[2], appended_[2], forward_done_;
  float *scratch_ = nullptr, *lse_acc_ = nullptr;  // attention_scratch_floats()
  // Decode partials: [slot][n_heads][head_dim] and [slot][n_heads] (footprint.hpp).
  int64_t split_ = 0;       // keys per split, fixed for the executor's life
  int64_t part_slots_ = 0;  // slots the buffers hold
  float *part_o_ = nullptr, *part_lse_ = nullptr;
  AttnArgs decode_args_;  // reused: its piece list keeps its capacity
  std::vector<void*> store_k_, store_v_;  // per KV head: where its new rows go
  std::vector<Event*> all_events_;
  std::vector<int> heads_tmp_;
  std::vector<HeadRun> runs_tmp_;

  int64_t pos0_ = 0;
  int n_ = 0;
  int64_t blocks_before_ = 0;  // blocks holding tokens before pos0
  std::vector<Fill> fills_;
  std::vector<size_t> layer_fills_;  // first fill of each layer, then fills_.size()
  size_t issued_ = 0;
  TransferStats stats_;
};

}  // namespace headinfer
