// What every concrete tokenizer shares: the vocabulary, text->id lookup, token
// types, end-of-generation ids and the literal special-token splitter.
#pragma once

#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/bpe_merge.hpp"
#include "tokenizer/special_splitter.hpp"
#include "tokenizer/tokenizer.hpp"

namespace headinfer {

// Lets unordered_map<std::string, ...> be searched with a string_view, no copy.
struct StringViewHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using TokenIndex = std::unordered_map<std::string, int32_t, StringViewHash, std::equal_to<>>;

class VocabTokenizer : public Tokenizer {
 public:
  // Throws when ids in the spec (BOS, EOS, ...) or per-token arrays do not fit the tokens.
  explicit VocabTokenizer(VocabSpec spec);

  const std::string& piece(int32_t id) const override;
  int32_t vocab_size() const override { return static_cast<int32_t>(spec_.tokens.size()); }
  int32_t bos_id() const override { return spec_.bos_id; }
  int32_t eos_id() const override { return spec_.eos_id; }
  bool add_bos_by_default() const override { return spec_.add_bos; }
  bool is_eog(int32_t id) const override;
  bool is_control(int32_t id) const override;
  int32_t special_id(std::string_view text) const override;
  int32_t token_id(std::string_view piece) const override;
  const VocabSpec& spec() const override { return spec_; }

 protected:
  int32_t type_of(int32_t id) const;
  bool valid(int32_t id) const { return id >= 0 && id < vocab_size(); }
  // Id of a piece when it is a token (any type), else -1.
  int32_t lookup(std::string_view text) const;
  // BPE by an explicit merge list: a pair merges when (left, right) is listed and
  // the concatenation is a token; lower rank first.
  bool ranked_merge(int32_t left, int32_t right, std::string_view joined, BpeCandidate* c) const;

  VocabSpec spec_;
  TokenIndex index_;
  SpecialTokenSplitter specials_;
  std::vector<int32_t> eog_ids_;
  // (left id << 32 | right id) -> rank, from spec_.merges; empty when the vocabulary
  // merges by scores (SentencePiece) or by the rank of the concatenation (tiktoken).
  std::unordered_map<uint64_t, int32_t> merge_rank_;
};

}  // namespace headinfer
