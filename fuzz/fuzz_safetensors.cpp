// libFuzzer target: the safetensors parser on arbitrary bytes. Parse errors are
// expected (Error); crashes, sanitizer reports and leaks are bugs.
#include <cstddef>
#include <cstdint>
#include <span>

#include "format/safetensors.hpp"
#include "headinfer/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto f = headinfer::SafetensorsFile::parse(std::span<const uint8_t>(data, size), "<fuzz>");
    // Touch the first and last byte of every tensor so ASan checks the bounds claimed.
    unsigned sum = 0;
    for (const headinfer::Tensor& t : f.tensors()) {
      size_t n = t.nbytes();
      if (n == 0) continue;
      auto* p = static_cast<const uint8_t*>(t.data);
      sum += p[0] + p[n - 1];
    }
    volatile unsigned sink = sum;
    (void)sink;
  } catch (const headinfer::Error&) {
  }
  return 0;
}
