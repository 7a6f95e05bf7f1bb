// Bounds-checked little-endian reads from a byte span. Every read names the source
// (a file path or "<memory>") and what was being read, so a truncated or corrupt
// file gives a one-line Error instead of reading past the end.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>

#include "headinfer/error.hpp"

namespace headinfer {

class ByteReader {
 public:
  ByteReader(std::span<const uint8_t> bytes, const std::string& source) : bytes_(bytes), source_(source) {}

  size_t pos() const { return pos_; }
  size_t size() const { return bytes_.size(); }
  size_t remaining() const { return bytes_.size() - pos_; }
  const std::string& source() const { return source_; }

  // Throws unless n more bytes are available; `what` names the field being read.
  void need(size_t n, std::string_view what) const {
    HI_CHECK(n <= remaining(), source_ << ": " << what << ": truncated at byte " << pos_ << ", expected " << n
                                       << " more bytes, file has " << remaining());
  }

  template <typename T>
  T read(std::string_view what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  std::string_view read_bytes(size_t n, std::string_view what) {
    need(n, what);
    std::string_view s(reinterpret_cast<const char*>(bytes_.data() + pos_), n);
    pos_ += n;
    return s;
  }

 private:
  std::span<const uint8_t> bytes_;
  const std::string& source_;
  size_t pos_ = 0;
};

}  // namespace headinfer
