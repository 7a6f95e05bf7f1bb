#include "tokenizer/special_splitter.hpp"

#include <algorithm>

namespace headinfer {

void SpecialTokenSplitter::add(const std::string& text, int32_t id, bool only_when_parsing) {
  if (text.empty()) return;
  auto& bucket = by_first_byte_[static_cast<uint8_t>(text[0])];
  bucket.push_back({text, id, only_when_parsing});
  std::stable_sort(bucket.begin(), bucket.end(),
                   [](const Entry& a, const Entry& b) { return a.text.size() > b.text.size(); });
  ++count_;
}

std::vector<SpecialTokenSplitter::Fragment> SpecialTokenSplitter::split(std::string_view text,
                                                                        bool parse_special) const {
  std::vector<Fragment> out;
  size_t plain_start = 0;
  for (size_t i = 0; i < text.size();) {
    const Entry* hit = nullptr;
    if (count_ != 0) {
      for (const Entry& e : by_first_byte_[static_cast<uint8_t>(text[i])]) {
        if (e.only_when_parsing && !parse_special) continue;
        if (text.compare(i, e.text.size(), e.text) == 0) {
          hit = &e;
          break;
        }
      }
    }
    if (!hit) {
      ++i;
      continue;
    }
    if (i > plain_start) out.push_back({text.substr(plain_start, i - plain_start), -1});
    out.push_back({text.substr(i, hit->text.size()), hit->id});
    i += hit->text.size();
    plain_start = i;
  }
  if (plain_start < text.size()) out.push_back({text.substr(plain_start), -1});
  return out;
}

}  // namespace headinfer
