// A Hugging Face model directory: config.json plus model.safetensors, or shards
// listed by model.safetensors.index.json. Weights stay in the file mappings.
#pragma once

#include <string>

#include "format/model_loader.hpp"

namespace headinfer {

LoadedModel load_hf_model(const std::string& dir);

}  // namespace headinfer
