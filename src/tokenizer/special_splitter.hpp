// Cuts text at literal occurrences of special/added tokens before any model sees it,
// so "<|eot_id|>" written in a prompt becomes one id instead of seven pieces.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace headinfer {

class SpecialTokenSplitter {
 public:
  struct Fragment {
    std::string_view text;
    int32_t id = -1;  // -1: ordinary text for the model
  };

  // only_when_parsing: control/unknown tokens match only when the caller asks for
  // special parsing; user-defined tokens always match (as in llama.cpp).
  void add(const std::string& text, int32_t id, bool only_when_parsing);
  bool empty() const { return count_ == 0; }

  // Leftmost-longest matches; the pieces between them come back as text fragments.
  std::vector<Fragment> split(std::string_view text, bool parse_special) const;

 private:
  struct Entry {
    std::string text;
    int32_t id;
    bool only_when_parsing;
  };
  std::array<std::vector<Entry>, 256> by_first_byte_;  // each longest first
  size_t count_ = 0;
};

}  // namespace headinfer
