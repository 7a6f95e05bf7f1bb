// The needle model: a two-layer Llama whose weights are set analytically (no
// training, no files) so that it is an induction circuit. Given
//   <s> filler ... MARK d1 d2 d3 d4 d5 filler ... MARK
// it continues with d1 d2 d3 d4 d5, from any depth and at any context length, which
// random weights cannot show. Spec: synthetic:needle[,dtype=f32|bf16] (default f32).
//
// Residual stream (hidden 256): four 64-wide subspaces
//   E [0, 64)    one-hot of the current token
//   P [64, 128)  one-hot of the previous token (written by layer 1)
//   R [128, 192) one-hot of the retrieved token (written by layer 2; lm_head reads it)
//   [192]        a constant 1 (the "bias" coordinate), rest zero
// Layer 1 head 0 attends to distance 1 using only RoPE (fast pairs), layer 2 head 0
// matches the current token against P at every earlier position (slow pairs, which
// barely turn even at millions of positions). Head 1 and the MLPs are zero.
// docs/needle.md explains the construction and its margins.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "format/model_loader.hpp"

namespace headinfer::needle {

// Token ids (the vocabulary is needle_vocab.hpp's).
constexpr int kVocab = 64;
constexpr int kUnk = 0, kBos = 1, kEos = 2;
constexpr int kDigit0 = 3;  // digits 0..9 are ids 3..12
constexpr int kMarker = 13;
constexpr int kFirstFiller = 14, kNumFillers = 50;
constexpr int kKeyDigits = 5;

// Shapes and the constants of the construction (the reference script's recipe).
constexpr int kHidden = 256, kHeads = 2, kHeadDim = 128, kFfn = 64, kLayers = 2;
constexpr int kE0 = 0, kP0 = 64, kR0 = 128, kBias = 192;
constexpr double kTheta = 1e20;
constexpr int kPrevPairs = 17;     // pairs 0..16 (angle per token 1 .. 1e-5 rad) place the previous token
constexpr int kContentPair0 = 26;  // pairs 26..63 (< 7.5e-9 rad per token) carry token identity
constexpr double kPrevScore = 30.0;     // layer-1 score per fast pair at distance 1
constexpr double kContentScore = 48.0;  // layer-2 score of a matching token
constexpr double kOutScale = 30.0;      // logit of the retrieved token
// A 4M-token haystack plus the question and the answer: the slow pairs still turn
// only ~0.03 rad across it, so the circuit holds a little past 4M as well.
constexpr int64_t kMaxPosition = (int64_t{1} << 22) + 1024;

// True for "synthetic:needle" and "synthetic:needle,<options>".
bool is_needle_spec(const std::string& spec);
ModelConfig needle_config();
// Builds the weights in memory (with_weights = false: shapes only).
LoadedModel load_needle_model(const std::string& spec, bool with_weights = true);

// A passkey prompt: BOS, fillers with MARK + key at the given depth, then MARK.
struct NeedlePrompt {
  std::vector<int32_t> ids;       // the whole prompt, `context` tokens
  std::vector<int32_t> key;       // the 5 digit ids the model should produce
  std::string key_text;           // the key as a 5-character string, e.g. "30127"
  int64_t key_position = 0;       // index in ids of the key's first digit
};

// context: prompt length in tokens (>= 16); depth in [0, 1]: where the key sits
// among the fillers (0: right after BOS, 1: right before the final marker).
// The key's digits are distinct (a repeated digit would make the induction ambiguous).
// The same (context, depth, seed) gives the same prompt on any machine.
NeedlePrompt make_needle_prompt(int64_t context, double depth, uint64_t seed);

// The digits of the generated ids as text ('?' for a non-digit id).
std::string digits_text(const std::vector<int32_t>& ids);

}  // namespace headinfer::needle
