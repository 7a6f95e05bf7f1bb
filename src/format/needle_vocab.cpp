#include "format/needle_vocab.hpp"

#include "format/needle.hpp"
#include "headinfer/error.hpp"
#include "tokenizer/utf8.hpp"
#include "tokenizer/vocab_tokenizer.hpp"

namespace headinfer::needle {
namespace {

constexpr const char* kMarkerWord = "passkey";
// Short, common words, so a haystack reads like (meaningless) text.
constexpr const char* kFillerWords[kNumFillers] = {
    "the",   "of",   "and",  "a",     "to",   "in",    "is",   "it",   "that",  "was",
    "for",   "on",   "are",  "with",  "as",   "his",   "they", "be",   "at",    "one",
    "have",  "this", "from", "or",    "had",  "by",    "word", "but",  "what",  "some",
    "we",    "can",  "out",  "other", "were", "all",   "there", "when", "up",   "use",
    "your",  "how",  "said", "an",    "each", "she",   "which", "do",  "their", "time"};

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_letter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

class NeedleTokenizer final : public VocabTokenizer {
 public:
  NeedleTokenizer() : VocabTokenizer(needle_vocab_spec()) {}

  std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const override {
    std::vector<int32_t> out;
    if (add_bos) out.push_back(kBos);
    for (const auto& frag : specials_.split(text, parse_special)) {
      if (frag.id >= 0) out.push_back(frag.id);
      else encode_words(frag.text, out);
    }
    return out;
  }

  std::string token_bytes(int32_t id) const override {
    if (!valid(id) || is_control(id)) return "";
    // Every word piece starts with U+2581, which decodes to the space before it.
    const std::string& p = spec_.tokens[static_cast<size_t>(id)];
    std::string out(1, ' ');
    out.append(p, utf8::kSpmSpace.size(), std::string::npos);
    return out;
  }

  bool strips_leading_space() const override { return true; }

 private:
  void encode_words(std::string_view text, std::vector<int32_t>& out) const {
    std::string piece;
    size_t i = 0;
    while (i < text.size()) {
      const char c = text[i];
      if (is_space(c)) {
        ++i;
      } else if (is_digit(c)) {
        out.push_back(kDigit0 + (c - '0'));
        ++i;
      } else if (is_letter(c)) {
        size_t j = i;
        while (j < text.size() && is_letter(text[j])) ++j;
        piece.assign(utf8::kSpmSpace);
        piece.append(text.substr(i, j - i));
        const int32_t id = lookup(piece);
        out.push_back(id >= 0 ? id : kUnk);
        i = j;
      } else {
        while (i < text.size() && !is_space(text[i]) && !is_digit(text[i]) && !is_letter(text[i])) ++i;
        out.push_back(kUnk);
      }
    }
  }
};

}  // namespace

VocabSpec needle_vocab_spec() {
  VocabSpec v;
  v.model = VocabSpec::Model::Spm;
  v.tokens = {"<unk>", "<s>", "</s>"};
  v.types = {VocabSpec::Unknown, VocabSpec::Control, VocabSpec::Control};
  auto word = [&](const std::string& w) {
    v.tokens.push_back(std::string(utf8::kSpmSpace) + w);
    v.types.push_back(VocabSpec::Normal);
  };
  for (int d = 0; d < 10; ++d) word(std::string(1, static_cast<char>('0' + d)));
  word(kMarkerWord);
  for (const char* w : kFillerWords) word(w);
  HI_CHECK(static_cast<int>(v.tokens.size()) == kVocab,
           "needle vocabulary: tokens: " << v.tokens.size() << " built, expected " << kVocab);
  v.scores.assign(v.tokens.size(), 0.0f);
  v.unk_id = kUnk;
  v.bos_id = kBos;
  v.eos_id = kEos;
  v.add_bos = true;
  v.add_eos = false;
  v.add_space_prefix = true;
  return v;
}

std::unique_ptr<Tokenizer> make_needle_tokenizer() { return std::make_unique<NeedleTokenizer>(); }

}  // namespace headinfer::needle
