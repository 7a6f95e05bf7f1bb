// ModelConfig from a Hugging Face config.json, as real Llama / Mistral / Qwen2
// checkpoints write it (transformers 4.x rope_scaling and 5.x rope_parameters).
#pragma once

#include <string>

#include <nlohmann/json_fwd.hpp>

#include "model/model_config.hpp"

namespace headinfer {

// `origin` names the source in errors (the config.json path).
ModelConfig parse_hf_config(const nlohmann::json& j, const std::string& origin);
// Reads and parses the file; validates the result.
ModelConfig load_hf_config(const std::string& path);

}  // namespace headinfer
