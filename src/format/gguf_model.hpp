// A model from a GGUF file written by llama.cpp's converter (architectures llama,
// mistral, qwen2): config from {arch}.* metadata, tensors by llama.cpp's names,
// Q/K rows returned to HF's rotate-half order, Q8_0 dequantized to F32.
#pragma once

#include <string>

#include "format/gguf.hpp"
#include "format/model_loader.hpp"

namespace headinfer {

ModelConfig gguf_model_config(const GgufFile& f);
LoadedModel load_gguf_model(const std::string& path);

}  // namespace headinfer
