#include "tokenizer/merge_list.hpp"

#include "headinfer/error.hpp"

namespace headinfer {

std::unordered_map<uint64_t, int32_t> parse_merge_list(const std::vector<std::string>& merges,
                                                       const TokenIndex& index, const std::string& what) {
  std::unordered_map<uint64_t, int32_t> ranks;
  ranks.reserve(merges.size());
  std::string joined;
  for (size_t r = 0; r < merges.size(); ++r) {
    const std::string& m = merges[r];
    // Search from 1: a piece may itself be a lone space in exotic vocabularies.
    size_t sep = m.find(' ', 1);
    HI_CHECK(sep != std::string::npos, what << ": merges[" << r << "]: no space in '" << m << "'");
    std::string_view left(m.data(), sep), right(m.data() + sep + 1, m.size() - sep - 1);
    auto l = index.find(left), rr = index.find(right);
    HI_CHECK(l != index.end() && rr != index.end(), what << ": merges[" << r << "]: '" << m << "' names a piece not in the vocabulary");
    joined.assign(left);
    joined.append(right);
    if (index.find(std::string_view(joined)) == index.end()) continue;  // result unknown: can never apply
    ranks.emplace(pair_key(l->second, rr->second), static_cast<int32_t>(r));  // first (best) rank wins
  }
  return ranks;
}

}  // namespace headinfer
