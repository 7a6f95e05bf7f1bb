// Llama 3's tokenizer.model: one "<base64 token bytes> <rank>" line per token. The
// rank is the token id and also the merge priority, so no merge list is stored.
#include <charconv>
#include <cstdio>

#include "headinfer/error.hpp"
#include "tokenizer/byte_unicode.hpp"
#include "tokenizer/loaders.hpp"

namespace headinfer {
namespace {

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

bool base64_decode(std::string_view in, std::string& out) {
  out.clear();
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    if (c == '=') break;
    int v = base64_value(c);
    if (v < 0) return false;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xFF);
    }
  }
  return true;
}

}  // namespace

bool looks_like_tiktoken(std::string_view bytes) {
  size_t eol = bytes.find('\n');
  std::string_view line = bytes.substr(0, eol);
  size_t sp = line.find(' ');
  if (sp == std::string_view::npos || sp == 0) return false;
  for (char c : line.substr(0, sp))
    if (base64_value(c) < 0 && c != '=') return false;
  for (char c : line.substr(sp + 1))
    if ((c < '0' || c > '9') && c != '\r') return false;
  return true;
}

VocabSpec parse_tiktoken_model(std::string_view text, const std::string& path) {
  VocabSpec spec;
  spec.model = VocabSpec::Model::Bpe;
  spec.pre = "llama3";
  std::string raw;
  size_t line_no = 0;
  for (size_t pos = 0; pos < text.size();) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    std::string_view line = text.substr(pos, eol - pos);
    pos = eol + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    size_t sp = line.find(' ');
    HI_CHECK(sp != std::string_view::npos, path << ": line " << line_no << ": expected '<base64> <rank>'");
    int64_t rank = -1;
    auto rank_text = line.substr(sp + 1);
    auto [end, ec] = std::from_chars(rank_text.data(), rank_text.data() + rank_text.size(), rank);
    HI_CHECK(ec == std::errc() && end == rank_text.data() + rank_text.size() && rank >= 0 && rank < (1 << 24),
             path << ": line " << line_no << ": bad rank '" << rank_text << "'");
    HI_CHECK(base64_decode(line.substr(0, sp), raw) && !raw.empty(), path << ": line " << line_no << ": bad base64");
    if (static_cast<size_t>(rank) >= spec.tokens.size()) spec.tokens.resize(rank + 1);
    HI_CHECK(spec.tokens[rank].empty(), path << ": line " << line_no << ": rank " << rank << " given twice");
    spec.tokens[rank] = to_byte_level(raw);
  }
  HI_CHECK(!spec.tokens.empty(), path << ": no tokens");
  for (size_t id = 0; id < spec.tokens.size(); ++id)
    HI_CHECK(!spec.tokens[id].empty(), path << ": rank " << id << ": missing (ranks must be contiguous)");
  spec.types.assign(spec.tokens.size(), VocabSpec::Normal);
  add_llama3_special_tokens(spec);
  return spec;
}

void add_llama3_special_tokens(VocabSpec& spec) {
  // Llama 3.1 names (llama-models); 3.0 called 128004/128005/128008/128010
  // reserved_special_token_2/3/4/5, which only changes their text.
  const int32_t base = static_cast<int32_t>(spec.tokens.size());
  static const char* const named[] = {
      "<|begin_of_text|>",   "<|end_of_text|>",   "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
      "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>", "<|start_header_id|>", "<|end_header_id|>",
      "<|eom_id|>",          "<|eot_id|>",        "<|python_tag|>"};
  constexpr int kSpecialCount = 256;
  if (spec.types.size() < spec.tokens.size()) spec.types.resize(spec.tokens.size(), VocabSpec::Normal);
  int reserved = 3;
  for (int i = 0; i < kSpecialCount; ++i) {
    if (i < static_cast<int>(std::size(named))) {
      spec.tokens.emplace_back(named[i]);
    } else {
      char name[48];
      std::snprintf(name, sizeof name, "<|reserved_special_token_%d|>", reserved++);
      spec.tokens.emplace_back(name);
    }
    spec.types.push_back(VocabSpec::Control);
  }
  if (!spec.scores.empty()) spec.scores.resize(spec.tokens.size(), 0.0f);
  spec.bos_id = base;       // <|begin_of_text|>
  spec.eos_id = base + 1;   // <|end_of_text|>
  spec.eot_ids = {base + 8, base + 9};  // <|eom_id|>, <|eot_id|>
  spec.add_bos = true;
  spec.pre = "llama3";
  spec.ignore_merges = true;
}

}  // namespace headinfer
