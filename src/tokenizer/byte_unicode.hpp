// GPT-2's byte-level alphabet: every byte gets a printable Unicode character so BPE
// vocabularies can be stored as text. Bytes that are printable Latin-1 keep their own
// code point; the other 68 take U+0100 upward in byte order.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace headinfer {

// The character (as UTF-8) standing for one byte.
const std::string& byte_to_unicode(uint8_t byte);
// Text bytes -> byte-level encoded string.
std::string to_byte_level(std::string_view bytes);
// Byte-level encoded string -> raw bytes. Characters outside the alphabet are kept
// as their UTF-8 (added tokens stored raw in some vocabularies decode unchanged).
std::string from_byte_level(std::string_view text);

}  // namespace headinfer
