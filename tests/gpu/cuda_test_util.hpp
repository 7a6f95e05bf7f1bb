// Helpers of the CUDA parity tests: device buffers, NaN poisoning, dtype round trips
// and a comparison that prints where and by how much two results differ.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "backend/cuda/cuda_backend.hpp"
#include "common/half.hpp"
#include "format/tensor.hpp"
#include "headinfer/error.hpp"

namespace headinfer::test {

#define HI_REQUIRE_CUDA()                                                                                   \
  do {                                                                                                      \
    if (!::headinfer::cuda_available())                                                                     \
      GTEST_SKIP() << "no usable CUDA device or driver (cuda_available() is false): CUDA parity tests need " \
                      "an sm_80+ GPU";                                                                      \
  } while (0)

// One backend for the whole test binary (created on first use).
inline Backend& gpu() {
  static std::unique_ptr<Backend> b = make_cuda_backend(0);
  return *b;
}

// A CUDA backend made with the environment variable `name` set to `value` (a backend
// reads its switches when it is made); the variable is unset again afterwards.
inline std::unique_ptr<Backend> make_cuda_backend_with_env(const char* name, const char* value) {
  setenv(name, value, 1);
  auto be = make_cuda_backend(0);
  unsetenv(name);
  return be;
}

// The CPU backend (the project's reference implementation), on host memory.
inline Backend& cpu() {
  static std::unique_ptr<Backend> b = make_cpu_backend(0);
  return *b;
}

inline std::vector<double> widen(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

// A device allocation freed on scope exit.
class DevBuf {
 public:
  DevBuf() = default;
  explicit DevBuf(size_t bytes) : bytes_(bytes), p_(gpu().alloc(bytes)) {}
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  DevBuf(DevBuf&& o) noexcept : bytes_(o.bytes_), p_(o.p_) { o.p_ = nullptr; }
  DevBuf& operator=(DevBuf&& o) noexcept {
    std::swap(bytes_, o.bytes_);
    std::swap(p_, o.p_);
    return *this;
  }
  ~DevBuf() {
    if (p_) gpu().free(p_);
  }
  void* get() const { return p_; }
  float* f() const { return static_cast<float*>(p_); }
  size_t bytes() const { return bytes_; }

 private:
  size_t bytes_ = 0;
  void* p_ = nullptr;
};

template <typename T>
DevBuf to_device(const std::vector<T>& v) {
  DevBuf b(v.size() * sizeof(T));
  gpu().upload(b.get(), v.data(), v.size() * sizeof(T));
  return b;
}

// A device buffer of n floats, every one NaN (so an output never written fails).
inline DevBuf poisoned(size_t n) { return to_device(std::vector<float>(n, kNaN)); }

// Waits for the whole device first: the buffer may have been written on the stream of
// another backend than gpu() (gpu_bf16_rows(), gpu_own()), which gpu()'s download does
// not wait for.
inline std::vector<float> to_host(const DevBuf& b, size_t n) {
  std::vector<float> v(n);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  gpu().download(v.data(), b.get(), n * sizeof(float));
  return v;
}

inline std::vector<float> randn(size_t n, std::mt19937& rng, float sigma = 1.f) {
  std::normal_distribution<float> d(0.f, sigma);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// The value x takes once stored as dt.
inline float round_to(DType dt, float x) {
  switch (dt) {
    case DType::BF16: return bf16_to_f32(f32_to_bf16(x));
    case DType::F16: return f16_to_f32(f32_to_f16(x));
    default: return x;
  }
}

// Bytes of v stored as dt (F32 / F16 / BF16).
inline std::vector<uint8_t> encode(DType dt, const std::vector<float>& v) {
  std::vector<uint8_t> out(dtype_bytes(dt, static_cast<int64_t>(v.size())));
  for (size_t i = 0; i < v.size(); ++i) {
    if (dt == DType::F32) {
      std::memcpy(out.data() + 4 * i, &v[i], 4);
    } else {
      uint16_t h = dt == DType::BF16 ? f32_to_bf16(v[i]) : f32_to_f16(v[i]);
      std::memcpy(out.data() + 2 * i, &h, 2);
    }
  }
  return out;
}

// How two outputs meant to be bit-equal differ: how many values, the first, the largest gap.
inline std::string differing(const std::vector<float>& a, const std::vector<float>& b) {
  size_t n = 0, first = 0, worst = 0;
  double gap = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    if (std::memcmp(&a[i], &b[i], sizeof(float)) == 0) continue;
    if (n++ == 0) first = i;
    const double d = std::abs(static_cast<double>(a[i]) - b[i]);
    if (!(d <= gap)) {
      gap = d;
      worst = i;
    }
  }
  std::ostringstream os;
  os << n << " of " << a.size() << " values differ";
  if (n > 0)
    os << ", the first at [" << first << "] (" << a[first] << " vs " << b[first] << "), the largest gap " << gap
       << " at [" << worst << "]";
  return os.str();
}

// Compares got with ref: fails on any NaN in got (unless ref is NaN there), on an
// infinity mismatch, or when max|got - ref| / max|ref| exceeds rel_tol (or, with
// abs_mode, when max|got - ref| exceeds rel_tol). Prints the worst element.
inline ::testing::AssertionResult close(const std::vector<float>& got, const std::vector<double>& ref, double rel_tol,
                                        bool abs_mode = false) {
  if (got.size() != ref.size())
    return ::testing::AssertionFailure() << "size " << got.size() << " vs reference " << ref.size();
  double max_err = 0, max_ref = 0;
  size_t worst = 0, nan_count = 0, first_nan = 0, inf_bad = 0, first_inf_bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = got[i], r = ref[i];
    if (std::isnan(r)) continue;
    if (std::isnan(g)) {
      if (nan_count++ == 0) first_nan = i;
      continue;
    }
    if (std::isinf(r) || std::isinf(g)) {
      if (g != r && inf_bad++ == 0) first_inf_bad = i;
      continue;
    }
    max_ref = std::max(max_ref, std::abs(r));
    const double e = std::abs(g - r);
    if (e > max_err) {
      max_err = e;
      worst = i;
    }
  }
  const double measure = abs_mode ? max_err : max_err / std::max(max_ref, 1e-30);
  std::ostringstream os;
  os << (abs_mode ? "max|err| " : "max|err|/max|ref| ") << measure << " (tolerance " << rel_tol << "; max|err| "
     << max_err << " at [" << worst << "]: got " << (got.empty() ? 0.f : got[worst]) << ", reference "
     << (ref.empty() ? 0.0 : ref[worst]) << "; max|ref| " << max_ref << "; " << got.size() << " values)";
  if (nan_count)
    return ::testing::AssertionFailure() << nan_count << " NaN outputs, first at [" << first_nan
                                         << "] (reference " << ref[first_nan] << "); " << os.str();
  if (inf_bad)
    return ::testing::AssertionFailure() << inf_bad << " infinity mismatches, first at [" << first_inf_bad
                                         << "]: got " << got[first_inf_bad] << ", reference " << ref[first_inf_bad]
                                         << "; " << os.str();
  if (!(measure <= rel_tol)) return ::testing::AssertionFailure() << os.str();
  return ::testing::AssertionSuccess() << os.str();
}

}  // namespace headinfer::test
