// Small UTF-8 helpers shared by the tokenizers and the stream decoder. Invalid input
// is never an error here: a stray byte counts as a one-byte character, so every
// tokenizer stays total over arbitrary bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace headinfer::utf8 {

// Length a sequence starting with this byte claims (1 for ASCII and stray bytes).
inline size_t sequence_length(uint8_t lead) {
  if (lead < 0x80) return 1;
  if ((lead & 0xE0) == 0xC0) return 2;
  if ((lead & 0xF0) == 0xE0) return 3;
  if ((lead & 0xF8) == 0xF0) return 4;
  return 1;
}

inline bool is_continuation(uint8_t b) { return (b & 0xC0) == 0x80; }

// Byte length of the character at s[i], clamped so a truncated or malformed
// sequence splits into single bytes instead of swallowing its neighbours.
inline size_t char_length_at(std::string_view s, size_t i) {
  size_t n = sequence_length(static_cast<uint8_t>(s[i]));
  if (i + n > s.size()) return 1;
  for (size_t k = 1; k < n; ++k)
    if (!is_continuation(static_cast<uint8_t>(s[i + k]))) return 1;
  return n;
}

// Code point of the (well-formed) character at s[i]; stray bytes give their value.
inline uint32_t decode_at(std::string_view s, size_t i, size_t* len) {
  size_t n = char_length_at(s, i);
  *len = n;
  auto b = [&](size_t k) { return static_cast<uint32_t>(static_cast<uint8_t>(s[i + k])); };
  switch (n) {
    case 2: return ((b(0) & 0x1F) << 6) | (b(1) & 0x3F);
    case 3: return ((b(0) & 0x0F) << 12) | ((b(1) & 0x3F) << 6) | (b(2) & 0x3F);
    case 4: return ((b(0) & 0x07) << 18) | ((b(1) & 0x3F) << 12) | ((b(2) & 0x3F) << 6) | (b(3) & 0x3F);
    default: return b(0);
  }
}

inline void append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Length of the longest prefix of s that does not end inside a character that more
// bytes could still complete. Malformed bytes are not held back: they can never
// become a character, so waiting for more would only delay output.
inline size_t complete_prefix(std::string_view s) {
  size_t n = s.size();
  // A character is at most 4 bytes, so only the last 3 can start an unfinished one.
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    uint8_t b = static_cast<uint8_t>(s[n - back]);
    if (is_continuation(b)) continue;
    size_t need = sequence_length(b);
    return (need > back) ? n - back : n;
  }
  return n;
}

// U+2581 LOWER ONE EIGHTH BLOCK: SentencePiece's visible space.
inline constexpr std::string_view kSpmSpace = "\xE2\x96\x81";

}  // namespace headinfer::utf8
