#include "tokenizer/byte_unicode.hpp"

#include <array>

#include "tokenizer/utf8.hpp"

namespace headinfer {
namespace {

struct ByteAlphabet {
  std::array<std::string, 256> encoded;
  std::array<int16_t, 512> decoded;  // code point (< 512) -> byte, or -1

  ByteAlphabet() {
    decoded.fill(-1);
    auto kept = [](int b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF); };
    uint32_t next_free = 256;
    for (int b = 0; b < 256; ++b) {
      uint32_t cp = kept(b) ? static_cast<uint32_t>(b) : next_free++;
      utf8::append(encoded[b], cp);
      decoded[cp] = static_cast<int16_t>(b);
    }
  }
};

const ByteAlphabet& alphabet() {
  static const ByteAlphabet a;
  return a;
}

}  // namespace

const std::string& byte_to_unicode(uint8_t byte) { return alphabet().encoded[byte]; }

std::string to_byte_level(std::string_view bytes) {
  const auto& a = alphabet();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) out += a.encoded[static_cast<uint8_t>(c)];
  return out;
}

std::string from_byte_level(std::string_view text) {
  const auto& a = alphabet();
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    size_t len = 0;
    uint32_t cp = utf8::decode_at(text, i, &len);
    if (cp < a.decoded.size() && a.decoded[cp] >= 0 && len > 0) {
      out += static_cast<char>(a.decoded[cp]);
    } else {
      out.append(text.substr(i, len));
    }
    i += len;
  }
  return out;
}

}  // namespace headinfer
