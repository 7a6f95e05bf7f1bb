// Errors of the headinfer library: one exception type whose message is a single
// line a user can act on ("<what>: <field>: <problem>"), plus the source location
// that raised it for developers.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace headinfer {

class Error : public std::runtime_error {
 public:
  Error(std::string message, const char* src_file, int src_line)
      : std::runtime_error(std::move(message)), src_file_(src_file), src_line_(src_line) {}

  const char* src_file() const { return src_file_; }
  int src_line() const { return src_line_; }
  // "message [src/format/gguf.cpp:120]"
  std::string with_location() const;

 private:
  const char* src_file_;
  int src_line_;
};

}  // namespace headinfer

// HI_FAIL("gguf " << path << ": tensor '" << name << "': offset past end of file");
#define HI_FAIL(stream_expr)                                            \
  do {                                                                  \
    std::ostringstream hi_fail_os_;                                     \
    hi_fail_os_ << stream_expr;                                         \
    throw ::headinfer::Error(hi_fail_os_.str(), __FILE__, __LINE__);    \
  } while (0)

#define HI_CHECK(cond, stream_expr) \
  do {                              \
    if (!(cond)) HI_FAIL(stream_expr); \
  } while (0)
