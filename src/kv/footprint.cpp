#include "kv/footprint.hpp"

#include <algorithm>
#include <string>
#include <unordered_set>

#include "model/fused_weights.hpp"

namespace headinfer {

namespace {

// in_place_only: only the tensors a backend whose device memory is host RAM uses
// where the model holds them: not the fused matrices (new allocations), not Q8_0
// (dequantized into a copy).
int64_t weight_bytes(const ModelWeights& w, bool in_place_only) {
  std::unordered_set<const void*> seen;
  std::unordered_set<std::string> seen_names;
  int64_t total = 0;
  auto visit = [&](const Tensor& t) {
    if (t.shape.empty() || (in_place_only && t.dtype == DType::Q8_0)) return;
    if (t.data != nullptr ? !seen.insert(t.data).second : !seen_names.insert(t.name).second) return;
    const DType d = t.dtype == DType::Q8_0 ? DType::F32 : t.dtype;
    total += alloc_rounded(static_cast<int64_t>(dtype_bytes(d, t.numel())));
  };
  visit(w.tok_embd);
  visit(w.out_norm);
  visit(w.lm_head);
  for (const LayerWeights& l : w.layers) {
    for (const Tensor* t : {&l.attn_norm, &l.wo, &l.ffn_norm, &l.w_down}) visit(*t);
    if (in_place_only) continue;
    // The fused matrices are one allocation each (model/fused_weights.hpp).
    total += alloc_rounded(static_cast<int64_t>(fused_qkv(l).bytes()));
    total += alloc_rounded(static_cast<int64_t>(fused_gate_up(l).bytes()));
    const FusedVector bias = fused_qkv_bias(l);
    if (bias.any) total += alloc_rounded(static_cast<int64_t>(bias.bytes()));
  }
  return total;
}

}  // namespace

int64_t prepared_weight_bytes(const ModelWeights& w) { return weight_bytes(w, false); }

int64_t in_place_weight_bytes(const ModelWeights& w) { return weight_bytes(w, true); }

int default_mlp_chunk(int max_chunk) { return std::min(max_chunk, 2048); }

std::vector<int64_t> activation_floats(const ModelConfig& cfg, int max_chunk, int mlp_chunk) {
  const int64_t c = max_chunk, m = mlp_chunk;
  const int64_t q_w = int64_t{cfg.n_heads} * cfg.head_dim, kv_w = int64_t{cfg.n_kv_heads} * cfg.head_dim;
  return {c * cfg.hidden, c * cfg.hidden, c * (q_w + 2 * kv_w), c * q_w, m * 2 * cfg.ffn_hidden, c * cfg.hidden,
          int64_t{cfg.vocab_size}};
}

int64_t token_id_slots(int max_chunk) { return std::max(max_chunk, 2); }

std::vector<int64_t> attention_scratch_floats(const ModelConfig& cfg, int max_chunk) {
  const int64_t c = max_chunk;
  // Scratch of attention calls over all heads (AttnArgs::scratch), and the running
  // lse of every head.
  return {c * cfg.n_heads * (cfg.head_dim + 1), c * cfg.n_heads};
}

std::vector<int64_t> decode_partials_floats(const ModelConfig& cfg, int64_t capacity, int64_t block_tokens) {
  const int64_t split = decode_split_tokens(capacity, block_tokens);
  const int64_t slots = (capacity + split - 1) / split;
  return {slots * cfg.n_heads * cfg.head_dim, slots * cfg.n_heads};
}

int64_t staging_bytes(const ModelConfig& cfg, DType kv_dtype, int max_host_heads, int max_chunk) {
  return 2 * int64_t{max_host_heads} * max_chunk * static_cast<int64_t>(kv_row_bytes(cfg, kv_dtype));
}

DeviceFootprint engine_footprint(const ModelConfig& cfg, DType kv_dtype, const KvSchedule& s, int64_t capacity,
                                 int max_chunk, int mlp_chunk) {
  DeviceFootprint f;
  // A layer's resident slabs are one K and one V allocation (kv_store.hpp).
  const int64_t slab_side = static_cast<int64_t>(kv_row_bytes(cfg, kv_dtype)) * capacity;
  int max_host = 0;
  for (int l = 0; l < cfg.n_layers; ++l) {
    max_host = std::max(max_host, s.host_heads(cfg, l));
    const int resident = cfg.n_kv_heads - s.host_heads(cfg, l);
    if (resident > 0) f.resident_kv += 2 * alloc_rounded(slab_side * resident);
  }
  if (max_host > 0) {
    f.buffers = s.n_buffers * alloc_rounded(s.buffer_bytes);
    f.staging = 2 * alloc_rounded(staging_bytes(cfg, kv_dtype, max_host, max_chunk));
  }
  for (int64_t n : activation_floats(cfg, max_chunk, mlp_chunk)) f.activations += alloc_rounded(n * 4);
  for (int64_t n : attention_scratch_floats(cfg, max_chunk)) f.activations += alloc_rounded(n * 4);
  for (int64_t n : decode_partials_floats(cfg, capacity, s.block_tokens)) f.activations += alloc_rounded(n * 4);
  f.activations += alloc_rounded(4 * token_id_slots(max_chunk));
  return f;
}

}  // namespace headinfer
