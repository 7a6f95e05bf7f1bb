// One description for every supported decoder family (Llama 2/3/3.1/3.2, Mistral,
// Qwen2), parsed once from config.json, GGUF metadata or a synthetic preset.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace headinfer {

struct RopeScaling {
  enum class Type { None, Linear, Dynamic, Llama3 };
  Type type = Type::None;
  double factor = 1.0;
  // llama3 only
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position = 8192;
};

const char* rope_scaling_name(RopeScaling::Type t);

struct ModelConfig {
  std::string arch = "llama";  // "llama", "mistral", "qwen2"
  int n_layers = 0;
  int hidden = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;      // explicit in config, else hidden / n_heads
  int ffn_hidden = 0;    // intermediate_size
  int vocab_size = 0;
  int64_t max_position = 0;  // max_position_embeddings (trained context)
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  // Per-pair divisors of the inverse frequencies (head_dim / 2 values), as llama.cpp
  // stores Llama-3 scaling in GGUF (tensor rope_freqs.weight). Empty: not used.
  // Applied on top of rope_scaling (which GGUF files then leave at None).
  std::vector<double> rope_freq_factors;
  float rms_eps = 1e-5f;
  bool tie_embeddings = false;
  bool qkv_bias = false;  // Qwen2
  int bos_id = -1;
  std::vector<int> eos_ids;

  int q_per_kv() const { return n_heads / n_kv_heads; }
  // Bytes of K+V one token takes across all layers at the given element size.
  int64_t kv_bytes_per_token(int elem_bytes) const {
    return int64_t{2} * n_layers * n_kv_heads * head_dim * elem_bytes;
  }
  // Throws Error (naming `origin`, e.g. the config.json path) on inconsistent shapes.
  void validate(const std::string& origin) const;
};

// Inverse frequencies of the rotary pairs (head_dim / 2 values) for a sequence whose
// longest position is `seq_len` (only dynamic scaling depends on it).
std::vector<double> rope_inv_freq(const ModelConfig& cfg, int64_t seq_len);

}  // namespace headinfer
