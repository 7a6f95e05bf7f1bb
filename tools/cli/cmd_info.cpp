#include <cstdio>
#include <iostream>

#include "commands.hpp"
#include "common/units.hpp"
#include "format/model_loader.hpp"

namespace headinfer::cli {

Runner add_info(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "print a model's architecture, size and KV bytes per token");
  auto o = std::make_shared<ModelOptions>();
  add_model_options(*cmd, *o);
  return [=] {
    LoadedModel m = load_model(o->model);
    const ModelConfig& c = m.config;
    const char* attn = c.n_kv_heads == c.n_heads ? "MHA" : (c.n_kv_heads == 1 ? "MQA" : "GQA");
    std::printf("model          %s (%s)\n", m.spec.c_str(), m.format.c_str());
    std::printf("architecture   %s, %d layers, hidden %d, ffn %d, vocab %d\n", c.arch.c_str(), c.n_layers, c.hidden,
                c.ffn_hidden, c.vocab_size);
    std::printf("attention      %s: %d query heads, %d KV heads, head_dim %d%s\n", attn, c.n_heads, c.n_kv_heads,
                c.head_dim, c.qkv_bias ? ", QKV bias" : "");
    std::printf("rope           theta %g, scaling %s", c.rope_theta, rope_scaling_name(c.rope_scaling.type));
    if (c.rope_scaling.type != RopeScaling::Type::None) std::printf(" x%g", c.rope_scaling.factor);
    std::printf("\ncontext        %lld tokens (trained)\n", static_cast<long long>(c.max_position));
    std::printf("embeddings     %s\n", c.tie_embeddings ? "tied" : "untied");
    std::printf("parameters     %lld (%.2f B)\n", static_cast<long long>(m.weights.parameter_count()),
                m.weights.parameter_count() / 1e9);
    std::printf("weights        %s, %s\n", dtype_name(m.weight_dtype), format_bytes(m.weights.total_bytes()).c_str());
    std::printf("KV per token   %s (BF16), %s (F32): %d slabs of (layer, KV head)\n",
                format_bytes(c.kv_bytes_per_token(2)).c_str(), format_bytes(c.kv_bytes_per_token(4)).c_str(),
                c.n_layers * c.n_kv_heads);
    return 0;
  };
}

}  // namespace headinfer::cli
