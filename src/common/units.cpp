#include "common/units.hpp"

#include <cctype>
#include <cmath>
#include <cstdio>

#include "headinfer/error.hpp"

namespace headinfer {
namespace {

// Splits "1.5 GiB" into 1.5 and "gib" (lower case, spaces dropped).
bool split_number(const std::string& text, double& value, std::string& unit) {
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
  if (i == 0) return false;
  try {
    size_t used = 0;
    value = std::stod(text.substr(0, i), &used);
    if (used != i) return false;
  } catch (...) {
    return false;
  }
  unit.clear();
  for (size_t j = i; j < text.size(); ++j)
    if (!std::isspace(static_cast<unsigned char>(text[j]))) unit += static_cast<char>(std::tolower(text[j]));
  return value >= 0 && std::isfinite(value);
}

}  // namespace

int64_t parse_bytes(const std::string& text, const std::string& what) {
  double v = 0;
  std::string u;
  if (split_number(text, v, u)) {
    double mul = -1;
    if (u.empty() || u == "b") mul = 1;
    else if (u == "k" || u == "kib") mul = 1024.0;
    else if (u == "m" || u == "mib") mul = 1024.0 * 1024;
    else if (u == "g" || u == "gib") mul = 1024.0 * 1024 * 1024;
    else if (u == "t" || u == "tib") mul = 1024.0 * 1024 * 1024 * 1024;
    else if (u == "kb") mul = 1e3;
    else if (u == "mb") mul = 1e6;
    else if (u == "gb") mul = 1e9;
    else if (u == "tb") mul = 1e12;
    if (mul > 0 && v * mul < 9.2e18) return static_cast<int64_t>(std::llround(v * mul));
  }
  HI_FAIL(what << ": '" << text << "' is not a size (expected e.g. 24GiB, 512MiB, 16GB or a byte count)");
}

int64_t parse_tokens(const std::string& text, const std::string& what) {
  double v = 0;
  std::string u;
  if (split_number(text, v, u)) {
    double mul = -1;
    if (u.empty()) mul = 1;
    else if (u == "k") mul = 1024.0;
    else if (u == "m") mul = 1024.0 * 1024;
    if (mul > 0 && v * mul < 9.2e18 && std::floor(v * mul) == v * mul) return static_cast<int64_t>(v * mul);
  }
  HI_FAIL(what << ": '" << text << "' is not a token count (expected e.g. 4096, 16K, 1M)");
}

std::string format_bytes(int64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (std::fabs(v) >= 1024.0 && u < 4) {
    v /= 1024.0;
    ++u;
  }
  char buf[32];
  if (u == 0) std::snprintf(buf, sizeof buf, "%lld B", static_cast<long long>(bytes));
  else std::snprintf(buf, sizeof buf, "%.2f %s", v, units[u]);
  return buf;
}

std::string format_tokens(int64_t tokens) {
  if (tokens > 0 && tokens % (int64_t{1} << 20) == 0) return std::to_string(tokens >> 20) + "M";
  if (tokens > 0 && tokens % 1024 == 0) return std::to_string(tokens >> 10) + "K";
  return std::to_string(tokens);
}

}  // namespace headinfer
