// A one-line progress display on a terminal's stderr (tokens, rate, ETA); silent
// when stderr is not a terminal, so logs and pipes stay clean.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace headinfer {

class Progress {
 public:
  Progress(std::string label, int64_t total, bool enabled);
  void update(int64_t done);
  void finish();  // clears the line

 private:
  std::string label_;
  int64_t total_;
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point t0_, last_;
};

bool stderr_is_terminal();

}  // namespace headinfer
