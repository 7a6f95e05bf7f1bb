// Byte-level BPE (GPT-2, Llama 3, Qwen2): regex pre-tokenization, bytes mapped to
// printable characters, then merges by rank inside each word.
#pragma once

#include <memory>
#include <unordered_map>

#include "tokenizer/regex_splitter.hpp"
#include "tokenizer/vocab_tokenizer.hpp"

namespace headinfer {

class ByteLevelBpeTokenizer final : public VocabTokenizer {
 public:
  explicit ByteLevelBpeTokenizer(VocabSpec spec);

  std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special = true) const override;
  std::string token_bytes(int32_t id) const override;

 private:
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;

  std::unique_ptr<RegexSplitter> splitter_;
  bool ignore_merges_;
};

}  // namespace headinfer
