// SentencePiece-style BPE (Llama 2, Mistral, TinyLlama stories): spaces become U+2581,
// a dummy space is prepended, adjacent pieces merge best-score first while their
// concatenation is a vocabulary piece, and characters outside the vocabulary fall
// back to <0xNN> byte tokens.
#pragma once

#include <array>
#include <unordered_map>

#include "tokenizer/vocab_tokenizer.hpp"

namespace headinfer {

class SpmTokenizer final : public VocabTokenizer {
 public:
  explicit SpmTokenizer(VocabSpec spec);

  std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special = true) const override;
  std::string token_bytes(int32_t id) const override;
  bool strips_leading_space() const override { return spec_.add_space_prefix; }

 private:
  // Normalized text (U+2581 for spaces) -> ids appended to out.
  void encode_normalized(std::string_view text, std::vector<int32_t>& out) const;
  bool mergeable(int32_t id) const;

  std::array<int32_t, 256> byte_ids_;  // <0xNN> token per byte, or -1
};

}  // namespace headinfer
