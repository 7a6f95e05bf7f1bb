#include "common/process_memory.hpp"

#include <fstream>
#include <string>

namespace headinfer {

void reset_peak_rss() {
  // "5" resets the peak RSS (proc(5), /proc/pid/clear_refs).
  std::ofstream out("/proc/self/clear_refs");
  if (out) out << "5";
}

int64_t peak_rss_bytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) {
      try {
        return std::stoll(line.substr(6)) * 1024;  // in kB
      } catch (...) {
        return -1;
      }
    }
  return -1;
}

}  // namespace headinfer
