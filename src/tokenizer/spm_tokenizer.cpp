#include "tokenizer/spm_tokenizer.hpp"

#include <cstdio>

#include "headinfer/error.hpp"
#include "tokenizer/bpe_merge.hpp"
#include "tokenizer/merge_list.hpp"
#include "tokenizer/utf8.hpp"

namespace headinfer {
namespace {

// SentencePiece's remove_extra_whitespaces: no leading/trailing spaces, runs of
// spaces collapse to one.
std::string collapse_spaces(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  bool pending_space = false;
  for (char c : text) {
    if (c == ' ') {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) out += ' ';
    pending_space = false;
    out += c;
  }
  return out;
}

void escape_spaces(std::string_view text, std::string& out) {
  for (char c : text) {
    if (c == ' ')
      out += utf8::kSpmSpace;
    else
      out += c;
  }
}

}  // namespace

SpmTokenizer::SpmTokenizer(VocabSpec spec) : VocabTokenizer(std::move(spec)) {
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    byte_ids_[b] = lookup(name);
  }
  if (!spec_.merges.empty()) merge_rank_ = parse_merge_list(spec_.merges, index_, "vocabulary");
}

bool SpmTokenizer::mergeable(int32_t id) const {
  int32_t t = type_of(id);
  return t == VocabSpec::Normal || t == VocabSpec::UserDefined;
}

std::vector<int32_t> SpmTokenizer::encode(std::string_view text, bool add_bos, bool parse_special) const {
  std::vector<int32_t> out;
  if (add_bos && spec_.bos_id >= 0) out.push_back(spec_.bos_id);
  // As llama.cpp: every text run that starts the input or follows a special token
  // gets its own dummy prefix.
  bool after_special = true;
  std::string normalized;
  for (const auto& frag : specials_.split(text, parse_special)) {
    if (frag.id >= 0) {
      out.push_back(frag.id);
      after_special = true;
      continue;
    }
    normalized.clear();
    std::string collapsed;
    std::string_view body = frag.text;
    if (spec_.remove_extra_whitespaces) {
      collapsed = collapse_spaces(body);
      body = collapsed;
    }
    if (spec_.add_space_prefix && after_special) normalized += utf8::kSpmSpace;
    escape_spaces(body, normalized);
    encode_normalized(normalized, out);
    after_special = false;
  }
  return out;
}

void SpmTokenizer::encode_normalized(std::string_view text, std::vector<int32_t>& out) const {
  if (text.empty()) return;
  auto char_id = [&](std::string_view c) {
    int32_t id = lookup(c);
    return (id >= 0 && mergeable(id)) ? id : -1;
  };
  std::vector<BpeSymbol> syms = bpe_initial_symbols(text, char_id, utf8::char_length_at);

  if (merge_rank_.empty()) {
    bpe_merge(syms, text, [&](const BpeSymbol&, const BpeSymbol&, std::string_view joined, BpeCandidate* c) {
      int32_t id = lookup(joined);
      if (id < 0 || !mergeable(id)) return false;
      c->id = id;
      c->priority = spec_.scores.empty() ? 0.0f : spec_.scores[id];
      return true;
    });
  } else {
    bpe_merge(syms, text, [&](const BpeSymbol& a, const BpeSymbol& b, std::string_view joined, BpeCandidate* c) {
      return ranked_merge(a.id, b.id, joined, c);
    });
  }

  for (int32_t i = 0; i >= 0; i = syms[i].next) {
    const BpeSymbol& s = syms[i];
    if (s.id >= 0) {
      out.push_back(s.id);
      continue;
    }
    for (uint32_t k = 0; k < s.len; ++k) {
      int32_t b = byte_ids_[static_cast<uint8_t>(text[s.start + k])];
      if (b >= 0) {
        out.push_back(b);
      } else if (spec_.unk_id >= 0) {
        out.push_back(spec_.unk_id);  // no byte fallback: the whole character is one <unk>
        break;
      }
    }
  }
}

std::string SpmTokenizer::token_bytes(int32_t id) const {
  int32_t t = type_of(id);
  if (t == VocabSpec::Control || t == VocabSpec::Unknown || !valid(id)) return "";
  const std::string& p = spec_.tokens[id];
  if (t == VocabSpec::Byte) {
    unsigned v = 0;
    if (p.size() == 6 && std::sscanf(p.c_str(), "<0x%2X>", &v) == 1) return std::string(1, static_cast<char>(v));
    return "";
  }
  std::string out;
  out.reserve(p.size());
  for (size_t i = 0; i < p.size();) {
    if (p.compare(i, utf8::kSpmSpace.size(), utf8::kSpmSpace) == 0) {
      out += ' ';
      i += utf8::kSpmSpace.size();
    } else {
      out += p[i++];
    }
  }
  return out;
}

}  // namespace headinfer
