// libFuzzer target: the GGUF parser on arbitrary bytes, then what the model loader
// reads from a parsed file (config, vocabulary, tensor views). Error is expected;
// crashes, sanitizer reports, leaks and huge allocations are bugs.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "format/gguf.hpp"
#include "format/gguf_model.hpp"
#include "format/gguf_vocab.hpp"
#include "headinfer/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace headinfer;
  try {
    GgufFile f = GgufFile::parse(std::span<const uint8_t>(data, size), "<fuzz>");
    unsigned sum = 0;
    for (const GgufTensorInfo& info : f.tensor_infos()) {
      if (info.nbytes > 0) sum += info.data[0] + info.data[info.nbytes - 1];
      try {
        Tensor t = f.tensor(info.name);
        // Small tensors are converted as the loaders would, to check sizes agree.
        if (t.numel() > 0 && t.numel() <= 4096) {
          std::vector<float> out(static_cast<size_t>(t.numel()));
          to_f32(t.dtype, t.data, out.data(), t.numel());
        }
      } catch (const Error&) {
      }
    }
    volatile unsigned sink = sum;
    (void)sink;
    try {
      gguf_model_config(f);
    } catch (const Error&) {
    }
    try {
      gguf_vocab(f, "<fuzz>");
    } catch (const Error&) {
    }
  } catch (const Error&) {
  }
  return 0;
}
