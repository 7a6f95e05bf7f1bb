// Device bytes the engine allocates, computed from shapes alone. The Executor
// allocates exactly these buffers and the Plan adds them up, so a prediction is
// the allocation, not an estimate of it.
#pragma once

#include <cstdint>
#include <vector>

#include "kv/kv_schedule.hpp"
#include "model/model_config.hpp"
#include "model/weights.hpp"

namespace headinfer {

// What an allocation takes from the device: small ones come in 256-byte granules
// out of shared pools, large ones (1 MiB and up) in whole 2 MiB pages (cudaMalloc;
// measured on the GPU machine: a 32 MiB + 2 KiB KV slab side takes 34 MiB, see
// docs/offload.md "GPU"). The emulated CPU device and the CUDA backend's budget
// count allocations the same way.
inline int64_t alloc_rounded(int64_t bytes) {
  const int64_t b = std::max<int64_t>(bytes, 1);
  constexpr int64_t kPage = int64_t{2} << 20;
  return b >= (int64_t{1} << 20) ? (b + kPage - 1) / kPage * kPage : (b + 255) / 256 * 256;
}

// Weights as the Executor holds them on the device (Q8_0 becomes F32; tied tensors
// once; Q/K/V and gate/up as one fused matrix each, model/fused_weights.hpp).
int64_t prepared_weight_bytes(const ModelWeights& w);
// The part of those a backend whose device memory is host RAM (the CPU backend) uses
// where the loaded model holds them, so they take no memory beyond the model's.
int64_t in_place_weight_bytes(const ModelWeights& w);

// MLP rows per pass: bounds the three ffn-wide intermediates, whatever the chunk.
int default_mlp_chunk(int max_chunk);

// Executor activations in floats, in this order: x, h, qkv (fused [q | k | v] rows), attn,
// gate_up ([gate | up] rows of the MLP pass), tmp, logits.
std::vector<int64_t> activation_floats(const ModelConfig& cfg, int max_chunk, int mlp_chunk);
// Token ids a forward reads from device memory: a chunk's, and at least the two slots
// greedy steps issued ahead of the host alternate between (Executor::issue_greedy).
int64_t token_id_slots(int max_chunk);
// Attention scratch in floats: one block's output, accumulated log-sum-exp, one block's log-sum-exp.
std::vector<int64_t> attention_scratch_floats(const ModelConfig& cfg, int max_chunk);
// Decode attention partials in floats: outputs [slots][n_heads][head_dim], then
// log-sum-exps [slots][n_heads], for every split of a capacity-token context
// (decode_split_tokens).
std::vector<int64_t> decode_partials_floats(const ModelConfig& cfg, int64_t capacity, int64_t block_tokens);
// The chunk's new K/V of the offloaded heads of a layer, before they go to the host.
int64_t staging_bytes(const ModelConfig& cfg, DType kv_dtype, int max_host_heads, int max_chunk);

struct DeviceFootprint {
  int64_t weights = 0;
  int64_t resident_kv = 0;
  int64_t buffers = 0;      // ping-pong buffers
  int64_t staging = 0;      // two staging buffers (layers alternate)
  int64_t activations = 0;  // activations, attention scratch and decode partials, token ids
  int64_t total() const { return weights + resident_kv + buffers + staging + activations; }
};

// Everything but the weights, for a KV capacity of `capacity` tokens.
DeviceFootprint engine_footprint(const ModelConfig& cfg, DType kv_dtype, const KvSchedule& s, int64_t capacity,
                                 int max_chunk, int mlp_chunk);

}  // namespace headinfer
