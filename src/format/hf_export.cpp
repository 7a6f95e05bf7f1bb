#include "format/hf_export.hpp"

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "format/safetensors_writer.hpp"
#include "headinfer/error.hpp"

namespace headinfer {
namespace {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

const char* hf_architecture(const std::string& arch) {
  if (arch == "llama") return "LlamaForCausalLM";
  if (arch == "mistral") return "MistralForCausalLM";
  if (arch == "qwen2") return "Qwen2ForCausalLM";
  HI_FAIL("export: model_type: no transformers class for architecture '" << arch
                                                                          << "', expected llama, mistral or qwen2");
}

const char* torch_dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "float32";
    case DType::F16: return "float16";
    case DType::BF16: return "bfloat16";
    case DType::Q8_0: return "float32";  // written dequantized
  }
  return "float32";
}

ojson rope_scaling_json(const RopeScaling& rs) {
  switch (rs.type) {
    case RopeScaling::Type::None: return nullptr;
    case RopeScaling::Type::Linear: return {{"rope_type", "linear"}, {"factor", rs.factor}};
    case RopeScaling::Type::Dynamic: return {{"rope_type", "dynamic"}, {"factor", rs.factor}};
    case RopeScaling::Type::Llama3:
      return {{"rope_type", "llama3"},
              {"factor", rs.factor},
              {"low_freq_factor", rs.low_freq_factor},
              {"high_freq_factor", rs.high_freq_factor},
              {"original_max_position_embeddings", rs.original_max_position}};
  }
  return nullptr;
}

// rms_norm_eps as the decimal people write (1e-05, not 9.99999974737875e-06): the
// engine reads it back into the same float, and transformers gets the intended value.
double float_as_short_decimal(float f) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(f));
  for (int digits = 1; digits <= 9; ++digits) {
    std::snprintf(buf, sizeof buf, "%.*g", digits, static_cast<double>(f));
    if (std::stof(buf) == f) break;
  }
  return std::stod(buf);
}

// The file dtype of a tensor: its own, but F32 for Q8_0 (no safetensors type).
TensorToWrite entry(const std::string& name, const Tensor& t) {
  return TensorToWrite{name, &t, t.dtype == DType::Q8_0 ? DType::F32 : t.dtype};
}

std::vector<TensorToWrite> hf_tensors(const LoadedModel& m) {
  const ModelWeights& w = m.weights;
  std::vector<TensorToWrite> out;
  out.push_back(entry("model.embed_tokens.weight", w.tok_embd));
  for (size_t i = 0; i < w.layers.size(); ++i) {
    const LayerWeights& l = w.layers[i];
    const std::string p = "model.layers." + std::to_string(i) + ".";
    out.push_back(entry(p + "input_layernorm.weight", l.attn_norm));
    out.push_back(entry(p + "self_attn.q_proj.weight", l.wq));
    out.push_back(entry(p + "self_attn.k_proj.weight", l.wk));
    out.push_back(entry(p + "self_attn.v_proj.weight", l.wv));
    if (m.config.qkv_bias) {
      out.push_back(entry(p + "self_attn.q_proj.bias", l.bq));
      out.push_back(entry(p + "self_attn.k_proj.bias", l.bk));
      out.push_back(entry(p + "self_attn.v_proj.bias", l.bv));
    }
    out.push_back(entry(p + "self_attn.o_proj.weight", l.wo));
    out.push_back(entry(p + "post_attention_layernorm.weight", l.ffn_norm));
    out.push_back(entry(p + "mlp.gate_proj.weight", l.w_gate));
    out.push_back(entry(p + "mlp.up_proj.weight", l.w_up));
    out.push_back(entry(p + "mlp.down_proj.weight", l.w_down));
  }
  out.push_back(entry("model.norm.weight", w.out_norm));
  // Tied checkpoints carry no lm_head (transformers ties it to the embedding).
  if (!m.config.tie_embeddings) out.push_back(entry("lm_head.weight", w.lm_head));
  return out;
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  HI_CHECK(out.good(), path.string() << ": cannot create");
  out << text;
  out.close();
  HI_CHECK(out.good(), path.string() << ": write failed (disk full?)");
}

}  // namespace

ojson hf_config_json(const ModelConfig& c, DType dtype) {
  HI_CHECK(c.rope_freq_factors.empty(),
           "export: rope_freq_factors: per-pair RoPE divisors (a GGUF rope_freqs tensor) have no config.json "
           "field; export the model from its Hugging Face checkpoint instead");
  ojson j;
  j["architectures"] = {hf_architecture(c.arch)};
  j["model_type"] = c.arch;
  j["hidden_size"] = c.hidden;
  j["intermediate_size"] = c.ffn_hidden;
  j["num_hidden_layers"] = c.n_layers;
  j["num_attention_heads"] = c.n_heads;
  j["num_key_value_heads"] = c.n_kv_heads;
  j["head_dim"] = c.head_dim;
  j["hidden_act"] = "silu";
  j["max_position_embeddings"] = c.max_position;
  j["rms_norm_eps"] = float_as_short_decimal(c.rms_eps);
  j["rope_theta"] = c.rope_theta;
  j["rope_scaling"] = rope_scaling_json(c.rope_scaling);
  j["vocab_size"] = c.vocab_size;
  j["tie_word_embeddings"] = c.tie_embeddings;
  if (c.arch == "qwen2") {
    // Qwen2 always has q/k/v biases (no attention_bias field); no sliding window.
    j["use_sliding_window"] = false;
    j["sliding_window"] = nullptr;
    j["max_window_layers"] = c.n_layers;
  } else {
    j["attention_bias"] = false;
    j["mlp_bias"] = false;
  }
  if (c.arch == "mistral") j["sliding_window"] = nullptr;
  j["attention_dropout"] = 0.0;
  j["initializer_range"] = 0.02;
  // transformers 4.56 renamed torch_dtype to dtype; older versions read torch_dtype.
  j["torch_dtype"] = torch_dtype_name(dtype);
  j["dtype"] = torch_dtype_name(dtype);
  j["use_cache"] = true;
  if (c.bos_id >= 0) j["bos_token_id"] = c.bos_id;
  if (c.eos_ids.size() == 1) j["eos_token_id"] = c.eos_ids[0];
  else if (!c.eos_ids.empty()) j["eos_token_id"] = c.eos_ids;
  return j;
}

HfExportResult export_hf_model(const LoadedModel& m, const std::string& dir, const HfExportOptions& opts) {
  HI_CHECK(opts.max_shard_bytes > 0, "export: max shard size must be positive");
  HI_CHECK(!m.weights.tok_embd.empty(), m.spec << ": export needs the weights (the model was opened without them)");
  const ojson config = hf_config_json(m.config, m.weight_dtype);
  std::error_code ec;
  fs::create_directories(dir, ec);
  HI_CHECK(fs::is_directory(dir), dir << ": cannot create the output directory"
                                      << (ec ? " (" + ec.message() + ")" : std::string()));
  // Files of an earlier export with another shard count would confuse loaders.
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name == "model.safetensors.index.json" ||
        (name.rfind("model", 0) == 0 && e.path().extension() == ".safetensors"))
      fs::remove(e.path());
  }

  // Shards in tensor order, each at most max_shard_bytes (HF's own rule).
  const std::vector<TensorToWrite> tensors = hf_tensors(m);
  std::vector<std::vector<TensorToWrite>> shards(1);
  int64_t in_shard = 0, total = 0;
  for (const TensorToWrite& t : tensors) {
    const int64_t b = file_bytes(t);
    if (in_shard > 0 && in_shard + b > opts.max_shard_bytes) {
      shards.emplace_back();
      in_shard = 0;
    }
    shards.back().push_back(t);
    in_shard += b;
    total += b;
  }
  const std::map<std::string, std::string> meta{{"format", "pt"}};
  HfExportResult r;
  r.shards = static_cast<int>(shards.size());
  r.tensor_bytes = total;
  if (shards.size() == 1) {
    write_safetensors((fs::path(dir) / "model.safetensors").string(), shards[0], meta);
  } else {
    ojson index;
    index["metadata"] = {{"total_size", total}};
    ojson& map = index["weight_map"] = ojson::object();
    for (size_t s = 0; s < shards.size(); ++s) {
      char name[64];
      std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", s + 1, shards.size());
      write_safetensors((fs::path(dir) / name).string(), shards[s], meta);
      for (const TensorToWrite& t : shards[s]) map[t.name] = name;
    }
    write_text(fs::path(dir) / "model.safetensors.index.json", index.dump(2) + "\n");
  }
  write_text(fs::path(dir) / "config.json", config.dump(2) + "\n");
  return r;
}

}  // namespace headinfer
