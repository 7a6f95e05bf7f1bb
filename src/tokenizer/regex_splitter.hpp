// Pre-tokenization for byte-level BPE: PCRE2 regexes (UTF-8 + Unicode properties)
// cut text into words; BPE never merges across a word boundary.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace headinfer {

// Patterns of the pre-tokenizers we know by name (GGUF tokenizer.ggml.pre values
// and our own loader names). Other names get GPT-2's pattern, the common ancestor.
std::vector<std::string> pre_tokenizer_regexes(const std::string& name);
extern const char* const kGpt2Pattern;
extern const char* const kLlama3Pattern;
extern const char* const kQwen2Pattern;

class RegexSplitter {
 public:
  explicit RegexSplitter(const std::vector<std::string>& patterns);
  ~RegexSplitter();
  RegexSplitter(const RegexSplitter&) = delete;
  RegexSplitter& operator=(const RegexSplitter&) = delete;

  // Each regex in turn splits every piece the previous one produced; text between
  // matches is kept as a piece of its own, so the pieces always cover the input.
  std::vector<std::string_view> split(std::string_view text) const;

 private:
  struct Compiled;
  std::vector<std::unique_ptr<Compiled>> regexes_;
};

}  // namespace headinfer
