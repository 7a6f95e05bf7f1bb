#include "tokenizer/bpe_tokenizer.hpp"

#include "tokenizer/bpe_merge.hpp"
#include "tokenizer/byte_unicode.hpp"
#include "tokenizer/merge_list.hpp"
#include "tokenizer/utf8.hpp"

namespace headinfer {

namespace {
bool uses_llama3_rules(const std::string& pre) { return pre == "llama3" || pre == "llama-bpe" || pre == "llama-v3"; }
}  // namespace

ByteLevelBpeTokenizer::ByteLevelBpeTokenizer(VocabSpec spec)
    : VocabTokenizer(std::move(spec)), ignore_merges_(spec_.ignore_merges || uses_llama3_rules(spec_.pre)) {
  splitter_ = std::make_unique<RegexSplitter>(spec_.pre_regexes.empty() ? pre_tokenizer_regexes(spec_.pre)
                                                                         : spec_.pre_regexes);
  if (!spec_.merges.empty()) merge_rank_ = parse_merge_list(spec_.merges, index_, "vocabulary");
}

std::vector<int32_t> ByteLevelBpeTokenizer::encode(std::string_view text, bool add_bos, bool parse_special) const {
  std::vector<int32_t> out;
  if (add_bos && spec_.bos_id >= 0) out.push_back(spec_.bos_id);
  for (const auto& frag : specials_.split(text, parse_special)) {
    if (frag.id >= 0) {
      out.push_back(frag.id);
      continue;
    }
    for (std::string_view word : splitter_->split(frag.text)) encode_word(word, out);
  }
  return out;
}

void ByteLevelBpeTokenizer::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  const std::string encoded = to_byte_level(word);
  if (ignore_merges_) {
    int32_t whole = lookup(encoded);
    if (whole >= 0) {
      out.push_back(whole);
      return;
    }
  }
  auto char_id = [&](std::string_view c) { return lookup(c); };
  std::vector<BpeSymbol> syms = bpe_initial_symbols(encoded, char_id, utf8::char_length_at);
  if (merge_rank_.empty()) {
    // tiktoken: the pair whose concatenation has the lowest rank (= id) merges first.
    bpe_merge(syms, encoded, [&](const BpeSymbol&, const BpeSymbol&, std::string_view joined, BpeCandidate* c) {
      int32_t id = lookup(joined);
      if (id < 0) return false;
      c->id = id;
      c->priority = -static_cast<float>(id);
      return true;
    });
  } else {
    bpe_merge(syms, encoded, [&](const BpeSymbol& a, const BpeSymbol& b, std::string_view joined, BpeCandidate* c) {
      return ranked_merge(a.id, b.id, joined, c);
    });
  }
  for (int32_t i = 0; i >= 0; i = syms[i].next) {
    const BpeSymbol& s = syms[i];
    if (s.id >= 0)
      out.push_back(s.id);
    else if (spec_.unk_id >= 0)
      out.push_back(spec_.unk_id);  // a byte character missing from the vocabulary
  }
}

std::string ByteLevelBpeTokenizer::token_bytes(int32_t id) const {
  int32_t t = type_of(id);
  if (!valid(id) || t == VocabSpec::Control || t == VocabSpec::Unknown) return "";
  // Added (user-defined) tokens are stored as their raw text, not byte-encoded.
  if (t == VocabSpec::UserDefined) return spec_.tokens[id];
  return from_byte_level(spec_.tokens[id]);
}

}  // namespace headinfer
