#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/regex_splitter.hpp"

#include <pcre2.h>

#include "headinfer/error.hpp"
#include "tokenizer/utf8.hpp"

namespace headinfer {

// The published patterns of GPT-2, Llama 3 (tiktoken cl100k-style) and Qwen2.
const char* const kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
const char* const kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

std::vector<std::string> pre_tokenizer_regexes(const std::string& name) {
  if (name == "llama3" || name == "llama-bpe" || name == "llama-v3" || name == "dbrx" || name == "smaug-bpe")
    return {kLlama3Pattern};
  if (name == "qwen2" || name == "deepseek-r1-qwen") return {kQwen2Pattern};
  // SmolLM & co. split digits one by one before the GPT-2 rules.
  if (name == "smollm" || name == "starcoder" || name == "refact" || name == "command-r") return {R"(\p{N})", kGpt2Pattern};
  // "gpt2", "gpt-2", "default" and names we do not know yet.
  return {kGpt2Pattern};
}

struct RegexSplitter::Compiled {
  pcre2_code* code = nullptr;
  ~Compiled() { pcre2_code_free(code); }
};

RegexSplitter::RegexSplitter(const std::vector<std::string>& patterns) {
  for (const std::string& p : patterns) {
    int err = 0;
    PCRE2_SIZE err_at = 0;
    auto c = std::make_unique<Compiled>();
    // MATCH_INVALID_UTF: malformed input bytes simply never match instead of
    // failing the whole call; they end up in a gap piece and get byte-encoded.
    c->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(p.data()), p.size(),
                            PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &err_at, nullptr);
    if (!c->code) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof msg);
      HI_FAIL("pre-tokenizer: regex '" << p << "': " << reinterpret_cast<const char*>(msg) << " at offset " << err_at);
    }
    pcre2_jit_compile(c->code, PCRE2_JIT_COMPLETE);  // best effort: the interpreter is the fallback
    regexes_.push_back(std::move(c));
  }
}

RegexSplitter::~RegexSplitter() = default;

namespace {

void split_one(pcre2_code* code, pcre2_match_data* md, std::string_view text, std::vector<std::string_view>& out) {
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0, gap_start = 0;
  while (pos < text.size()) {
    int rc = pcre2_match(code, subject, text.size(), pos, 0, md, nullptr);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) rc = pcre2_match(code, subject, text.size(), pos, PCRE2_NO_JIT, md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    HI_CHECK(rc >= 0, "pre-tokenizer: regex match failed with PCRE2 error " << rc);
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    size_t begin = ov[0], end = ov[1];
    if (end == begin) {  // empty match: step over one character, it joins the gap
      pos = begin + utf8::char_length_at(text, begin);
      continue;
    }
    if (begin > gap_start) out.push_back(text.substr(gap_start, begin - gap_start));
    out.push_back(text.substr(begin, end - begin));
    pos = gap_start = end;
  }
  if (gap_start < text.size()) out.push_back(text.substr(gap_start));
}

}  // namespace

std::vector<std::string_view> RegexSplitter::split(std::string_view text) const {
  std::vector<std::string_view> pieces{text};
  if (text.empty()) return {};
  pcre2_match_data* md = pcre2_match_data_create(1, nullptr);
  HI_CHECK(md != nullptr, "pre-tokenizer: out of memory");
  try {
    for (const auto& re : regexes_) {
      std::vector<std::string_view> next;
      next.reserve(pieces.size() * 2);
      for (std::string_view p : pieces) split_one(re->code, md, p, next);
      pieces.swap(next);
    }
  } catch (...) {
    pcre2_match_data_free(md);
    throw;
  }
  pcre2_match_data_free(md);
  return pieces;
}

}  // namespace headinfer
