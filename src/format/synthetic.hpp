// Synthetic models: real architecture shapes with deterministic, seeded random
// weights, for benchmarks and tests that need no checkpoint. Spec:
//   synthetic:<preset>[,layers=N][,seed=S][,dtype=bf16|f32]
// The same preset, options and seed give the same bits on any machine.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "format/model_loader.hpp"
#include "tokenizer/vocab_spec.hpp"

namespace headinfer {

struct SyntheticSpec {
  std::string preset;
  int layers = -1;  // -1: the preset's own count
  uint64_t seed = 0;
  DType dtype = DType::BF16;
};

// True for specs starting with "synthetic:".
bool is_synthetic_spec(const std::string& spec);
SyntheticSpec parse_synthetic_spec(const std::string& spec);
const std::vector<std::string>& synthetic_presets();
// The preset's config (layers overridden when spec.layers > 0); Error for unknown presets.
ModelConfig synthetic_config(const SyntheticSpec& spec);
LoadedModel load_synthetic_model(const std::string& spec);

// Byte-level SentencePiece vocabulary: <unk>, <s>, </s>, <0x00>..<0xFF>, then unused
// tokens up to vocab_size (>= 259). Any text encodes through the byte tokens.
VocabSpec synthetic_byte_vocab(int vocab_size);

}  // namespace headinfer
