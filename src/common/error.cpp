#include "headinfer/error.hpp"

namespace headinfer {

std::string Error::with_location() const {
  std::string s = what();
  s += " [";
  s += src_file_;
  s += ":";
  s += std::to_string(src_line_);
  s += "]";
  return s;
}

}  // namespace headinfer
