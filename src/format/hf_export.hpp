// Writes a loaded model (any format the engine reads, synthetic presets included)
// as a Hugging Face directory that transformers and the engine's HF loader both
// load: config.json (LlamaForCausalLM, MistralForCausalLM or Qwen2ForCausalLM) and
// model.safetensors, or shards with model.safetensors.index.json. Tensors stream
// from the model's views to the files (safetensors_writer.hpp): no second copy.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "format/model_loader.hpp"

namespace headinfer {

struct HfExportOptions {
  // Shards stay at or under this size (a single tensor larger than it gets a shard
  // of its own); one file named model.safetensors when everything fits.
  int64_t max_shard_bytes = (int64_t{4} << 30) - (int64_t{1} << 20);
};

struct HfExportResult {
  int shards = 0;
  int64_t tensor_bytes = 0;  // the index's metadata.total_size
};

// The config.json transformers expects for `cfg`, with torch_dtype from `dtype`.
// Throws Error for what config.json cannot express (GGUF per-pair RoPE divisors).
nlohmann::ordered_json hf_config_json(const ModelConfig& cfg, DType dtype);

// Writes into `dir` (created when missing; an existing config.json or safetensors
// file there is overwritten). Q8_0 matrices are written dequantized as F32, and
// the files keep every other tensor's stored dtype.
HfExportResult export_hf_model(const LoadedModel& model, const std::string& dir, const HfExportOptions& opts = {});

}  // namespace headinfer
