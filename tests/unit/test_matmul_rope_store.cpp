// Backend::matmul_rope_store_kv (a layer's QKV projection, RoPE and K/V store as one
// op) leaves what matmul_rows, then rope_store_kv_heads leave, and names a row layout
// that is not the fused [q | k | v] one.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "backend/backend.hpp"
#include "headinfer/error.hpp"

namespace headinfer {
namespace {

TEST(MatmulRopeStoreKv, EqualsTheProjectionThenRopeAndStore) {
  auto be = make_cpu_backend(1);
  std::mt19937 rng(6);
  std::normal_distribution<float> nd(0.f, 1.f);
  const int n_heads = 4, n_kv = 2, hd = 8, n = 3, cols = 24;
  const int64_t R = int64_t{n_heads + 2 * n_kv} * hd;
  std::vector<float> w(static_cast<size_t>(R * cols)), x(static_cast<size_t>(n * cols)), b(static_cast<size_t>(R));
  for (auto* v : {&w, &x, &b})
    for (float& e : *v) e = nd(rng);
  const Mat m{DType::F32, w.data(), R, cols}, bias{DType::F32, b.data(), R, 1};
  std::vector<double> freq(hd / 2);
  for (int i = 0; i < hd / 2; ++i) freq[static_cast<size_t>(i)] = std::pow(10000.0, -2.0 * i / hd);
  const size_t side = dtype_bytes(DType::BF16, int64_t{n} * hd);
  std::vector<uint8_t> kv_got(2 * side * n_kv, 0xff), kv_want(kv_got.size(), 0xee);
  std::vector<void*> gk, gv, wk, wv;
  for (int h = 0; h < n_kv; ++h) {
    gk.push_back(kv_got.data() + side * static_cast<size_t>(h));
    gv.push_back(kv_got.data() + side * static_cast<size_t>(n_kv + h));
    wk.push_back(kv_want.data() + side * static_cast<size_t>(h));
    wv.push_back(kv_want.data() + side * static_cast<size_t>(n_kv + h));
  }
  std::vector<float> got(static_cast<size_t>(n * R)), want(got.size());
  const RopeArgs rg{got.data(), R, n, n_heads + n_kv, hd, 41, freq.data()};
  const RopeArgs rw{want.data(), R, n, n_heads + n_kv, hd, 41, freq.data()};
  be->matmul_rope_store_kv(x.data(), DType::F32, n, m, &bias, rg, n_kv, DType::BF16, gk.data(), gv.data());
  be->matmul(x.data(), n, m, &bias, want.data());
  const float* k = want.data() + int64_t{n_heads} * hd;
  be->rope_store_kv_heads(rw, k, k + int64_t{n_kv} * hd, R, n, n_kv, hd, DType::BF16, wk.data(), wv.data());
  EXPECT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(float)));
  EXPECT_EQ(kv_got, kv_want);

  // Rows that are not [q | k | v] of w.rows floats: a clear error, nothing written.
  const RopeArgs wide{got.data(), R + 1, n, n_heads + n_kv, hd, 41, freq.data()};
  try {
    be->matmul_rope_store_kv(x.data(), DType::F32, n, m, &bias, wide, n_kv, DType::BF16, gk.data(), gv.data());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("matmul_rope_store_kv"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("[q | k | v]"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace headinfer
