// Runs the decoder over a span of tokens at the next positions of the context:
// embedding, then per layer norm -> QKV (one fused GEMM) -> RoPE (Q and K in one
// call) -> attention of every KV head over
// its slab (LayerAttention: resident slabs in place, offloaded ones streamed) ->
// output projection -> MLP (gate and up one fused GEMM, in row passes of mlp_chunk),
// and logits for the last position only; so the last layer, past its K/V store, runs
// for that row alone. Prefill calls it chunk by chunk; decode calls it with one token.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "backend/backend.hpp"
#include "format/model_loader.hpp"
#include "kv/kv_schedule.hpp"
#include "kv/kv_store.hpp"
#include "model/fused_weights.hpp"
#include "runtime/layer_attention.hpp"

namespace headinfer {

struct ExecutorOptions {
  int max_chunk = 512;         // largest number of tokens one forward() takes
  int64_t capacity = 0;        // KV capacity in tokens (the context the request may reach)
  DType kv_dtype = DType::F32;
  KvSchedule schedule;         // homes of the slabs and streaming; empty: all resident
  int mlp_chunk = 0;           // MLP rows per pass (0: default_mlp_chunk(max_chunk))
};

class Executor {
 public:
  Executor(Backend& backend, const LoadedModel& model, const ExecutorOptions& opts);
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // Appends tokens[0..n) at positions [position(), position()+n) and returns the
  // logits of the last one (vocab_size floats, valid until the next call).
  const std::vector<float>& forward(const int32_t* tokens, int n);
  // The same forward, returning only the argmax of the last logits (the first on ties,
  // as argmax(forward(...))): found by the backend, so the logits stay where they are.
  int32_t forward_greedy(const int32_t* tokens, int n);
  // The same forward, returning only the k largest last logits (Backend::top_k's order).
  std::vector<LogitCandidate> forward_top_k(const int32_t* tokens, int n, int k);

  // Greedy decoding with the host one step behind the device (executor_greedy.cpp).
  // issue_greedy(&t) queues the forward of token t; issue_greedy(nullptr) queues the
  // forward of the id the last issued step finds, which stays on the device, so the
  // host need not have read it: the device goes from one step to the next with no
  // round trip through the host between them. take_greedy() waits for the oldest
  // issued step not yet taken and returns its id (argmax of its logits, as
  // forward_greedy). At most two steps are in flight. drop_greedy() waits for those
  // not taken and forgets them: their positions are free again. position() counts
  // every issued step. forward*() and reset() need none in flight.
  void issue_greedy(const int32_t* token);
  int32_t take_greedy();
  void drop_greedy();
  int greedy_in_flight() const { return static_cast<int>(greedy_issued_ - greedy_taken_); }

  int64_t position() const { return kv_->length(); }
  int64_t capacity() const { return kv_->capacity(); }
  void reset() {
    drop_greedy();
    kv_->set_length(0);
  }
  // Makes room for a context of `tokens` (the KV cache grows; never shrinks).
  void reserve(int64_t tokens) { kv_->reserve(tokens); }
  const KvStore& kv() const { return *kv_; }
  // Bytes moved between host and device slabs since construction.
  const TransferStats& transfer_stats() const { return attn_->stats(); }

 private:
  struct Layer {
    Mat attn_norm, wqkv, bqkv, wo, ffn_norm, w_gate_up, w_down;  // model/fused_weights.hpp
  };
  Mat upload_fused(const FusedRows& f);
  Mat upload_fused(const FusedVector& v);
  void run_layer(const Layer& L, int layer, int n, int64_t pos0, const std::vector<double>& inv_freq);
  const float* forward_logits(const int32_t* tokens, int n);  // the last position's logits, backend memory
  const float* forward_ids(const int32_t* ids, int n);        // the same, the ids already in backend memory
  void check_token(int32_t id) const;
  void release();
  float* buf(size_t i) { return bufs_[i]; }

  Backend& be_;
  ModelConfig cfg_;
  ExecutorOptions opts_;
  std::vector<Layer> layers_;
  Mat tok_embd_, out_norm_, lm_head_;
  std::vector<std::shared_ptr<const void>> keep_alive_;
  std::vector<void*> fused_;  // device memory of the fused matrices
  std::unique_ptr<KvStore> kv_;
  std::unique_ptr<LayerAttention> attn_;
  // Activation buffers (kv/footprint.hpp): x, h, qkv, attn, gate_up, tmp, logits
  std::vector<float*> bufs_;
  int32_t* ids_ = nullptr;  // device copy of a forward's token ids (token_id_slots(max_chunk))
  // Greedy steps ahead of the host: step k writes its id to ids_[k % 2] (which step
  // k + 1 embeds) and copies it to host_ids_[k % 2]; copied_[k % 2] marks that copy.
  int32_t* host_ids_ = nullptr;  // alloc_host, at the first issue_greedy
  Event found_, copied_[2];
  int64_t greedy_issued_ = 0, greedy_taken_ = 0;
  bool chain_ = false;  // the last issued step's id is in ids_ (nothing overwrote it since)
  std::vector<float> logits_;
  std::vector<double> inv_freq_;
  int64_t inv_freq_len_ = -1;
};

}  // namespace headinfer
