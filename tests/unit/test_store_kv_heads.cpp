// Backend::store_kv_heads (a layer's new K/V of every head in one op) writes what
// per-head store_kv calls write, into destinations in any order.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "backend/backend.hpp"

namespace headinfer {
namespace {

TEST(StoreKvHeads, EqualsPerHeadStores) {
  auto be = make_cpu_backend(1);
  std::mt19937 rng(4);
  std::normal_distribution<float> nd(0.f, 1.f);
  const int n_heads = 3, hd = 16, n = 5;
  const int64_t stride = 4 * int64_t{n_heads} * hd + 3;  // rows of [q | q | k | v] and some padding
  std::vector<float> src(static_cast<size_t>(n * stride));
  for (float& x : src) x = nd(rng);
  const float* k = src.data() + 2 * n_heads * hd;
  const float* v = k + n_heads * hd;
  for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
    const size_t side = dtype_bytes(dt, int64_t{n} * hd);
    std::vector<uint8_t> got(2 * side * n_heads, 0xff), want(got.size(), 0xee);
    std::vector<void*> dk, dv;
    for (int h = 0; h < n_heads; ++h) {
      dk.push_back(got.data() + side * static_cast<size_t>(n_heads - 1 - h));  // K of every head first, reversed
      dv.push_back(got.data() + side * static_cast<size_t>(2 * n_heads - 1 - h));
      be->store_kv(k + h * hd, stride, n, hd, dt, want.data() + side * static_cast<size_t>(n_heads - 1 - h));
      be->store_kv(v + h * hd, stride, n, hd, dt, want.data() + side * static_cast<size_t>(2 * n_heads - 1 - h));
    }
    be->store_kv_heads(k, v, stride, n, n_heads, hd, dt, dk.data(), dv.data());
    EXPECT_EQ(got, want) << dtype_name(dt);
  }
}

}  // namespace
}  // namespace headinfer
