// Parses BPE merge lists ("left right" per merge, in rank order) into a pair table.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "tokenizer/vocab_tokenizer.hpp"

namespace headinfer {

inline uint64_t pair_key(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

// (left id, right id) -> rank. A merge whose halves or result are not tokens is an
// error naming `what` and the merge index.
std::unordered_map<uint64_t, int32_t> parse_merge_list(const std::vector<std::string>& merges,
                                                       const TokenIndex& index, const std::string& what);

}  // namespace headinfer
