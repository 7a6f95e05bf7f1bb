#include "format/tensor.hpp"

#include <cstring>

#include "common/half.hpp"
#include "headinfer/error.hpp"

namespace headinfer {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::Q8_0: return "Q8_0";
  }
  return "?";
}

size_t dtype_bytes(DType t, int64_t n) {
  switch (t) {
    case DType::F32: return static_cast<size_t>(n) * 4;
    case DType::F16:
    case DType::BF16: return static_cast<size_t>(n) * 2;
    case DType::Q8_0: return static_cast<size_t>(n / kQ8_0Block) * kQ8_0BlockBytes;
  }
  return 0;
}

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return shape.empty() ? 0 : n;
}

std::string Tensor::shape_str() const {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

void to_f32(DType t, const void* src, float* dst, int64_t n) {
  switch (t) {
    case DType::F32:
      std::memcpy(dst, src, static_cast<size_t>(n) * 4);
      return;
    case DType::F16: {
      // Byte loads: callers may hand in rows at odd addresses (a misaligned bias).
      auto* s = static_cast<const uint8_t*>(src);
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, s + 2 * i, 2);
        dst[i] = f16_to_f32(h);
      }
      return;
    }
    case DType::BF16: {
      // Byte loads: callers may hand in rows at odd addresses (a misaligned bias).
      auto* s = static_cast<const uint8_t*>(src);
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, s + 2 * i, 2);
        dst[i] = bf16_to_f32(h);
      }
      return;
    }
    case DType::Q8_0: {
      HI_CHECK(n % kQ8_0Block == 0, "Q8_0 tensor of " << n << " values is not a whole number of 32-blocks");
      auto* s = static_cast<const uint8_t*>(src);
      for (int64_t b = 0; b < n / kQ8_0Block; ++b) {
        uint16_t hs;
        std::memcpy(&hs, s + b * kQ8_0BlockBytes, 2);
        float scale = f16_to_f32(hs);
        auto* q = reinterpret_cast<const int8_t*>(s + b * kQ8_0BlockBytes + 2);
        for (int i = 0; i < kQ8_0Block; ++i) dst[b * kQ8_0Block + i] = scale * static_cast<float>(q[i]);
      }
      return;
    }
  }
}

}  // namespace headinfer
