// Byte sizes as people write them ("24GiB", "512M", "1.5 GB") and back.
#pragma once

#include <cstdint>
#include <string>

namespace headinfer {

// Binary (KiB, MiB, GiB, TiB, and K/M/G/T) and decimal (KB, MB, GB, TB) units;
// a bare number is bytes. Throws Error naming `what` on anything else.
int64_t parse_bytes(const std::string& text, const std::string& what);
// "1.50 GiB", "512.0 KiB", "17 B"
std::string format_bytes(int64_t bytes);
// Token counts as "16K", "1M", "4096": K and M are 1024-based, as contexts are.
int64_t parse_tokens(const std::string& text, const std::string& what);
// The other way: "16K", "1M", "1000" (exact only; anything else in plain digits).
std::string format_tokens(int64_t tokens);

}  // namespace headinfer
