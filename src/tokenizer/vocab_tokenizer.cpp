#include "tokenizer/vocab_tokenizer.hpp"

#include "tokenizer/merge_list.hpp"

#include <algorithm>

#include "headinfer/error.hpp"

namespace headinfer {

VocabTokenizer::VocabTokenizer(VocabSpec spec) : spec_(std::move(spec)) {
  const int32_t n = vocab_size();
  HI_CHECK(n > 0, "vocabulary: tokens: empty");
  HI_CHECK(spec_.types.empty() || spec_.types.size() == spec_.tokens.size(),
           "vocabulary: token_type: " << spec_.types.size() << " entries for " << n << " tokens");
  HI_CHECK(spec_.scores.empty() || spec_.scores.size() == spec_.tokens.size(),
           "vocabulary: scores: " << spec_.scores.size() << " entries for " << n << " tokens");
  auto check_id = [&](int id, const char* field) {
    HI_CHECK(id >= -1 && id < n, "vocabulary: " << field << ": id " << id << " outside 0.." << n - 1);
  };
  check_id(spec_.bos_id, "bos_token_id");
  check_id(spec_.eos_id, "eos_token_id");
  check_id(spec_.unk_id, "unknown_token_id");
  check_id(spec_.pad_id, "padding_token_id");
  for (int id : spec_.eot_ids) check_id(id, "eot_token_id");

  index_.reserve(spec_.tokens.size());
  for (int32_t id = 0; id < n; ++id) index_.emplace(spec_.tokens[id], id);  // first id wins

  for (int32_t id = 0; id < n; ++id) {
    int32_t t = type_of(id);
    if (t == VocabSpec::Control || t == VocabSpec::Unknown)
      specials_.add(spec_.tokens[id], id, /*only_when_parsing=*/true);
    else if (t == VocabSpec::UserDefined)
      specials_.add(spec_.tokens[id], id, /*only_when_parsing=*/false);
  }

  if (spec_.eos_id >= 0) eog_ids_.push_back(spec_.eos_id);
  for (int id : spec_.eot_ids)
    if (std::find(eog_ids_.begin(), eog_ids_.end(), id) == eog_ids_.end()) eog_ids_.push_back(id);
}

int32_t VocabTokenizer::type_of(int32_t id) const {
  if (!valid(id)) return VocabSpec::Unused;
  return spec_.types.empty() ? VocabSpec::Normal : spec_.types[id];
}

const std::string& VocabTokenizer::piece(int32_t id) const {
  HI_CHECK(valid(id), "tokenizer: token id " << id << " outside 0.." << vocab_size() - 1);
  return spec_.tokens[id];
}

bool VocabTokenizer::is_eog(int32_t id) const {
  return std::find(eog_ids_.begin(), eog_ids_.end(), id) != eog_ids_.end();
}

bool VocabTokenizer::is_control(int32_t id) const {
  int32_t t = type_of(id);
  return t == VocabSpec::Control || t == VocabSpec::Unknown;
}

int32_t VocabTokenizer::lookup(std::string_view text) const {
  auto it = index_.find(text);
  return it == index_.end() ? -1 : it->second;
}

int32_t VocabTokenizer::token_id(std::string_view piece) const { return lookup(piece); }

int32_t VocabTokenizer::special_id(std::string_view text) const {
  int32_t id = lookup(text);
  if (id < 0) return -1;
  int32_t t = type_of(id);
  bool special = t == VocabSpec::Control || t == VocabSpec::Unknown || t == VocabSpec::UserDefined;
  return special ? id : -1;
}

bool VocabTokenizer::ranked_merge(int32_t left, int32_t right, std::string_view joined, BpeCandidate* c) const {
  if (left < 0 || right < 0) return false;
  auto it = merge_rank_.find(pair_key(left, right));
  if (it == merge_rank_.end()) return false;
  c->id = lookup(joined);
  c->priority = -static_cast<float>(it->second);
  return c->id >= 0;
}

}  // namespace headinfer
