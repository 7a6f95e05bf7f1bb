// Opens a model by its spec: a Hugging Face directory, a .gguf file, or
// "synthetic:<preset>[,layers=N][,seed=S][,dtype=bf16|f32]".
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "model/model_config.hpp"
#include "model/weights.hpp"
#include "tokenizer/tokenizer.hpp"

namespace headinfer {

struct LoadedModel {
  std::string spec;         // what the user passed
  std::string format;       // "hf", "gguf", "synthetic"
  ModelConfig config;
  ModelWeights weights;
  DType weight_dtype = DType::BF16;  // dtype of the layer matrices as stored
  // Loads the tokenizer on demand (info needs none); throws Error naming the
  // directory when the model has no tokenizer.
  std::function<std::unique_ptr<Tokenizer>()> load_tokenizer;
};

// with_weights = false: shapes and config only (tensors have no data), for
// commands such as `info` that must not build a synthetic model's 16 GB.
LoadedModel load_model(const std::string& spec, bool with_weights = true);

}  // namespace headinfer
