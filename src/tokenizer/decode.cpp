// Ids -> text, whole or streamed. Both apply the same rules, so concatenating a
// stream's output always equals decode() of the same ids.
#include "tokenizer/tokenizer.hpp"
#include "tokenizer/utf8.hpp"

namespace headinfer {
namespace {

// The bytes one id contributes: control tokens show their piece only when the
// caller asked to keep specials.
std::string visible_bytes(const Tokenizer& tok, int32_t id, bool skip_special) {
  if (tok.is_control(id)) return skip_special ? std::string() : tok.piece(id);
  return tok.token_bytes(id);
}

}  // namespace

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  std::string out;
  for (int32_t id : ids) out += visible_bytes(*this, id, skip_special);
  if (strips_leading_space() && !out.empty() && out[0] == ' ') out.erase(0, 1);
  return out;
}

std::string StreamDecoder::push(int32_t id) {
  std::string bytes = visible_bytes(tok_, id, skip_special_);
  if (bytes.empty()) return "";
  if (at_start_) {
    at_start_ = false;
    if (tok_.strips_leading_space() && bytes[0] == ' ') bytes.erase(0, 1);
  }
  pending_ += bytes;
  size_t ready = utf8::complete_prefix(pending_);
  std::string out = pending_.substr(0, ready);
  pending_.erase(0, ready);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out;
  out.swap(pending_);
  return out;
}

}  // namespace headinfer
