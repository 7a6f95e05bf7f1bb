#include "model/model_config.hpp"

#include <cmath>
#include <numbers>

#include "headinfer/error.hpp"

namespace headinfer {

const char* rope_scaling_name(RopeScaling::Type t) {
  switch (t) {
    case RopeScaling::Type::None: return "none";
    case RopeScaling::Type::Linear: return "linear";
    case RopeScaling::Type::Dynamic: return "dynamic";
    case RopeScaling::Type::Llama3: return "llama3";
  }
  return "?";
}

void ModelConfig::validate(const std::string& origin) const {
  auto positive = [&](int64_t v, const char* field) {
    HI_CHECK(v > 0, origin << ": " << field << ": expected a positive value, got " << v);
  };
  positive(n_layers, "num_hidden_layers");
  positive(hidden, "hidden_size");
  positive(n_heads, "num_attention_heads");
  positive(n_kv_heads, "num_key_value_heads");
  positive(head_dim, "head_dim");
  positive(ffn_hidden, "intermediate_size");
  positive(vocab_size, "vocab_size");
  positive(max_position, "max_position_embeddings");
  HI_CHECK(n_heads % n_kv_heads == 0, origin << ": num_key_value_heads: " << n_kv_heads
                                             << " does not divide num_attention_heads " << n_heads);
  HI_CHECK(head_dim % 2 == 0, origin << ": head_dim: expected an even value (RoPE rotates pairs), got " << head_dim);
  HI_CHECK(std::isfinite(rope_theta) && rope_theta > 1.0,
           origin << ": rope_theta: expected a finite value > 1, got " << rope_theta);
  HI_CHECK(std::isfinite(rms_eps) && rms_eps > 0.0f, origin << ": rms_norm_eps: expected > 0, got " << rms_eps);
  if (rope_scaling.type != RopeScaling::Type::None) {
    HI_CHECK(std::isfinite(rope_scaling.factor) && rope_scaling.factor > 0,
             origin << ": rope_scaling.factor: expected > 0, got " << rope_scaling.factor);
  }
  if (rope_scaling.type == RopeScaling::Type::Dynamic) {
    HI_CHECK(rope_scaling.factor >= 1.0, origin << ": rope_scaling.factor: dynamic scaling needs a factor >= 1, got "
                                                << rope_scaling.factor);
  }
  if (rope_scaling.type == RopeScaling::Type::Llama3) {
    HI_CHECK(rope_scaling.low_freq_factor > 0 && rope_scaling.high_freq_factor > rope_scaling.low_freq_factor,
             origin << ": rope_scaling: expected 0 < low_freq_factor < high_freq_factor, got "
                    << rope_scaling.low_freq_factor << " and " << rope_scaling.high_freq_factor);
    HI_CHECK(rope_scaling.original_max_position > 0,
             origin << ": rope_scaling.original_max_position_embeddings: expected > 0, got "
                    << rope_scaling.original_max_position);
  }
  HI_CHECK(rope_freq_factors.empty() || static_cast<int>(rope_freq_factors.size()) == head_dim / 2,
           origin << ": rope_freqs: expected " << head_dim / 2 << " factors, got " << rope_freq_factors.size());
  for (double f : rope_freq_factors)
    HI_CHECK(std::isfinite(f) && f > 0, origin << ": rope_freqs: expected positive factors, got " << f);
  HI_CHECK(bos_id < vocab_size, origin << ": bos_token_id: " << bos_id << " is outside the vocabulary of "
                                       << vocab_size);
  for (int id : eos_ids)
    HI_CHECK(id >= 0 && id < vocab_size,
             origin << ": eos_token_id: " << id << " is outside the vocabulary of " << vocab_size);
}

std::vector<double> rope_inv_freq(const ModelConfig& cfg, int64_t seq_len) {
  const int d = cfg.head_dim;
  const RopeScaling& rs = cfg.rope_scaling;
  double base = cfg.rope_theta;
  if (rs.type == RopeScaling::Type::Dynamic && seq_len > cfg.max_position && d > 2) {
    // HF's dynamic NTK: grow the base so the longest wavelength stretches to seq_len.
    double ratio = rs.factor * static_cast<double>(seq_len) / static_cast<double>(cfg.max_position) - (rs.factor - 1);
    base *= std::pow(ratio, static_cast<double>(d) / (d - 2));
  }
  std::vector<double> inv(static_cast<size_t>(d / 2));
  for (int i = 0; i < d / 2; ++i) inv[i] = 1.0 / std::pow(base, 2.0 * i / d);

  if (rs.type == RopeScaling::Type::Linear) {
    for (double& f : inv) f /= rs.factor;
  } else if (rs.type == RopeScaling::Type::Llama3) {
    // HF's _compute_llama3_parameters: long wavelengths (beyond the original context /
    // low_freq_factor) are divided by the factor, short ones (below original /
    // high_freq_factor) kept, the band between blended linearly in 1/wavelength.
    const double old_ctx = static_cast<double>(rs.original_max_position);
    const double low_wavelen = old_ctx / rs.low_freq_factor;
    const double high_wavelen = old_ctx / rs.high_freq_factor;
    for (double& f : inv) {
      double wavelen = 2 * std::numbers::pi / f;
      if (wavelen > low_wavelen) {
        f /= rs.factor;
      } else if (wavelen >= high_wavelen) {
        double smooth = (old_ctx / wavelen - rs.low_freq_factor) / (rs.high_freq_factor - rs.low_freq_factor);
        f = (1 - smooth) * f / rs.factor + smooth * f;
      }
    }
  }
  if (!cfg.rope_freq_factors.empty()) {
    for (size_t i = 0; i < inv.size() && i < cfg.rope_freq_factors.size(); ++i) inv[i] /= cfg.rope_freq_factors[i];
  }
  return inv;
}

}  // namespace headinfer
