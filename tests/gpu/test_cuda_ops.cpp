// Parity of the CUDA backend's small ops against naive host references (double
// precision) and against the CPU backend. Every output buffer is poisoned with NaN
// before the op runs.
// Attention lives in test_cuda_attention.cpp.
#include <gtest/gtest.h>

// The CPU-only build also compiles tests/gpu: without CUDA this file is one skipped test.
#ifdef HEADINFER_HAVE_CUDA

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "backend/cuda/cuda_internal.hpp"
#include "gpu/cuda_test_util.hpp"
#include "runtime/sampler.hpp"

namespace headinfer::test {
namespace {

// These tests cover the GEMV kernel for up to kGemvMaxRows rows (the default takes it only
// for forwards of 1-2 rows): allowed for all before the shared backend is made.
const bool kTurnedOn = [] {
  setenv("HEADINFER_CUDA_GEMV", "1", 1);
  return true;
}();

const DType kWeightTypes[] = {DType::F32, DType::F16, DType::BF16};

TEST(CudaBackend, ReportsDevice) {
  HI_REQUIRE_CUDA();
  std::cout << "backend: " << gpu().name() << "\n";
  EXPECT_FALSE(gpu().name().empty());
}

TEST(CudaBackend, MemoryRoundTrip) {
  HI_REQUIRE_CUDA();
  std::mt19937 rng(1);
  std::vector<float> v = randn(12345, rng);
  DevBuf a = to_device(v);
  DevBuf b = poisoned(v.size());
  gpu().copy(b.get(), a.get(), v.size() * sizeof(float));
  std::vector<float> back = to_host(b, v.size());
  EXPECT_EQ(0, std::memcmp(back.data(), v.data(), v.size() * sizeof(float)));
  EXPECT_EQ(gpu().alloc(0), nullptr) << "alloc(0) should give a null pointer";
}

// Rows narrower than a block and spanning several (a partial last one).
class CudaOpsEmbed : public ::testing::TestWithParam<int64_t> {};

TEST_P(CudaOpsEmbed, MatchesTheTable) {
  HI_REQUIRE_CUDA();
  std::mt19937 rng(2);
  const int64_t rows = 50, cols = GetParam();
  const int n = 13;
  std::vector<float> table = randn(rows * cols, rng);
  std::vector<int32_t> ids(n);
  for (auto& id : ids) id = static_cast<int32_t>(rng() % rows);
  ids[0] = 0;
  ids[1] = static_cast<int32_t>(rows - 1);
  for (DType dt : kWeightTypes) {
    SCOPED_TRACE(dtype_name(dt));
    std::vector<uint8_t> bytes = encode(dt, table);
    Tensor t{"embed", dt, {rows, cols}, bytes.data()};
    std::vector<std::shared_ptr<const void>> keep;
    Mat m = gpu().prepare(t, keep);
    std::vector<double> ref(n * cols);
    for (int i = 0; i < n; ++i)
      for (int64_t c = 0; c < cols; ++c) ref[i * cols + c] = round_to(dt, table[ids[i] * cols + c]);
    DevBuf dids = to_device(ids);
    DevBuf out = poisoned(n * cols);
    gpu().embed(static_cast<const int32_t*>(dids.get()), n, m, out.f());
    std::vector<float> got = to_host(out, n * cols);
    EXPECT_TRUE(close(got, ref, 0.0)) << "device ids";
    std::vector<float> cpu_out(n * cols, kNaN);
    cpu().embed(ids.data(), n, cpu().prepare(t, keep), cpu_out.data());
    EXPECT_TRUE(close(got, widen(cpu_out), 0.0)) << "vs CPU backend";
    DevBuf out2 = poisoned(n * cols);
    gpu().embed(ids.data(), n, m, out2.f());  // host ids are staged by the backend
    EXPECT_TRUE(close(to_host(out2, n * cols), ref, 0.0)) << "host ids";
    std::vector<int32_t> bad = {1, static_cast<int32_t>(rows)};
    EXPECT_THROW(gpu().embed(bad.data(), 2, m, out2.f()), Error) << "host id past the vocabulary";
  }
}

INSTANTIATE_TEST_SUITE_P(Cols, CudaOpsEmbed, ::testing::Values(int64_t{67}, int64_t{600}));

TEST(CudaOps, RmsNorm) {
  HI_REQUIRE_CUDA();
  std::mt19937 rng(3);
  // Register kernel with 1, 2 and 4 float4s per thread, and the loop kernel (cols not a
  // multiple of 4, or past 16384).
  const std::pair<int, int64_t> shapes[] = {{1, 64},   {7, 4096},   {5, 1000},  {3, 33},
                                            {2, 8192}, {2, 14336}, {1, 16384}, {2, 20000}};
  const float eps = 1e-5f;
  for (DType dt : kWeightTypes) {
    for (auto [n, cols] : shapes) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + " n=" + std::to_string(n) + " cols=" + std::to_string(cols));
      std::vector<float> x = randn(n * cols, rng, 3.f), w = randn(cols, rng);
      std::vector<uint8_t> wb = encode(dt, w);
      std::vector<std::shared_ptr<const void>> keep;
      Mat m = gpu().prepare(Tensor{"norm", dt, {cols}, wb.data()}, keep);
      std::vector<double> ref(n * cols);
      for (int i = 0; i < n; ++i) {
        double ss = 0;
        for (int64_t c = 0; c < cols; ++c) ss += double(x[i * cols + c]) * x[i * cols + c];
        const double inv = 1.0 / std::sqrt(ss / cols + eps);
        for (int64_t c = 0; c < cols; ++c) ref[i * cols + c] = x[i * cols + c] * inv * round_to(dt, w[c]);
      }
      DevBuf dx = to_device(x);
      DevBuf out = poisoned(n * cols);
      gpu().rmsnorm(dx.f(), m, eps, n, out.f());
      std::vector<float> got = to_host(out, n * cols);
      EXPECT_TRUE(close(got, ref, 1e-5)) << "out of place";
      std::vector<float> cpu_out(n * cols, kNaN);
      cpu().rmsnorm(x.data(), cpu().prepare(Tensor{"norm", dt, {cols}, wb.data()}, keep), eps, n, cpu_out.data());
      EXPECT_TRUE(close(got, widen(cpu_out), 1e-5)) << "vs CPU backend";
      gpu().rmsnorm(dx.f(), m, eps, n, dx.f());
      EXPECT_TRUE(close(to_host(dx, n * cols), ref, 1e-5)) << "in place";
    }
  }
}

TEST(CudaOps, AddRmsNormEqualsAddThenRmsNorm) {
  HI_REQUIRE_CUDA();
  std::mt19937 rng(5);
  const std::pair<int, int64_t> shapes[] = {{1, 4096}, {9, 256}, {4, 1000}, {2, 8192}, {1, 4098}};
  const float eps = 1e-6f;
  for (DType dt : kWeightTypes) {
    for (auto [n, cols] : shapes) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + " n=" + std::to_string(n) + " cols=" + std::to_string(cols));
      std::vector<float> x = randn(n * cols, rng, 3.f), y = randn(n * cols, rng, 2.f), w = randn(cols, rng);
      std::vector<uint8_t> wb = encode(dt, w);
      std::vector<std::shared_ptr<const void>> keep;
      Mat m = gpu().prepare(Tensor{"norm", dt, {cols}, wb.data()}, keep);
      // The sum, exactly as add makes it, and the norm of it.
      DevBuf dx = to_device(x), dy = to_device(y), out = poisoned(n * cols);
      gpu().add_rmsnorm(dx.f(), dy.f(), m, eps, n, out.f());
      DevBuf ex = to_device(x), eout = poisoned(n * cols);
      gpu().add(ex.f(), dy.f(), static_cast<int64_t>(n) * cols);
      gpu().rmsnorm(ex.f(), m, eps, n, eout.f());
      const std::vector<float> sum = to_host(dx, n * cols), want_sum = to_host(ex, n * cols);
      EXPECT_EQ(0, std::memcmp(sum.data(), want_sum.data(), sum.size() * sizeof(float))) << "x + y";
      EXPECT_TRUE(close(to_host(out, n * cols), widen(to_host(eout, n * cols)), 1e-6)) << "the norm";
      // Against the CPU backend (its add_rmsnorm is add then rmsnorm).
      std::vector<float> cx = x, cout(n * cols, kNaN);
      cpu().add_rmsnorm(cx.data(), y.data(), cpu().prepare(Tensor{"norm", dt, {cols}, wb.data()}, keep), eps, n,
                        cout.data());
      EXPECT_TRUE(close(to_host(out, n * cols), widen(cout), 1e-5)) << "vs CPU backend";
      // In place: out = x.
      DevBuf ix = to_device(x);
      gpu().add_rmsnorm(ix.f(), dy.f(), m, eps, n, ix.f());
      EXPECT_TRUE(close(to_host(ix, n * cols), widen(cout), 1e-5)) << "in place";
    }
  }
}

// A row's norm has the same bits whether it is normed alone (decode) or among many
// (prefill): the kernel and its summation order depend on the row length only.
TEST(CudaOps, RmsNormRowBitsDoNotDependOnTheRowCount) {
  HI_REQUIRE_CUDA();
  std::mt19937 rng(9);
  for (int64_t cols : {int64_t{4096}, int64_t{8192}, int64_t{1000}}) {
    SCOPED_TRACE("cols=" + std::to_string(cols));
    const int n = 6;
    std::vector<float> x = randn(n * cols, rng, 3.f), y = randn(n * cols, rng), w = randn(cols, rng);
    std::vector<uint8_t> wb = encode(DType::BF16, w);
    std::vector<std::shared_ptr<const void>> keep;
    Mat m = gpu().prepare(Tensor{"norm", DType::BF16, {cols}, wb.data()}, keep);
    DevBuf all = to_device(x), dy = to_device(y), out_all = poisoned(n * cols);
    gpu().add_rmsnorm(all.f(), dy.f(), m, 1e-5f, n, out_all.f());
    const std::vector<float> want = to_host(out_all, n * cols);
    for (int i = 0; i < n; ++i) {
      std::vector<float> xi(x.begin() + i * cols, x.begin() + (i + 1) * cols);
      std::vector<float> yi(y.begin() + i * cols, y.begin() + (i + 1) * cols);
      DevBuf one = to_device(xi), dyi = to_device(yi), out_one = poisoned(cols);
      gpu().add_rmsnorm(one.f(), dyi.f(), m, 1e-5f, 1, out_one.f());
      const std::vector<float> got = to_host(out_one, cols);
      EXPECT_EQ(0, std::memcmp(got.data(), want.data() + i * cols, cols * sizeof(float))) << "row " << i;
    }
  }
}

struct MatmulShape {
  int n;
  int64_t rows, cols;
};

TEST(CudaOps, Matmul) {
  HI_REQUIRE_CUDA();
  std::mt19937 rng(4);
  const MatmulShape shapes[] = {{1, 64, 128}, {3, 257, 96}, {17, 1000, 3000}, {64, 512, 1024}, {5, 7, 9}};
  for (DType dt : kWeightTypes) {
    // f32 GEMM must not use TF32; F16 / BF16 round the activations to the weight dtype.
    const double tol = dt == DType::F32 ? 1e-5 : dt == DType::F16 ? 3e-3 : 1e-2;
    for (const auto& s : shapes) {
      for (bool with_bias : {false, true}) {
        SCOPED_TRACE(std::string(dtype_name(dt)) + " n=" + std::to_string(s.n) + " W=[" + std::to_string(s.rows) +
                     ", " + std::to_string(s.cols) + "]" + (with_bias ? " +bias" : ""));
        std::vector<float> x = randn(s.n * s.cols, rng), w = randn(s.rows * s.cols, rng, 0.05f),
                           bias = randn(s.rows, rng);
        std::vector<uint8_t> wb = encode(dt, w), bb = encode(dt, bias);
        std::vector<std::shared_ptr<const void>> keep;
        Mat mw = gpu().prepare(Tensor{"w", dt, {s.rows, s.cols}, wb.data()}, keep);
        Mat mb = gpu().prepare(Tensor{"b", dt, {s.rows}, bb.data()}, keep);
        std::vector<double> ref(s.n * s.rows);
        for (int i = 0; i < s.n; ++i)
          for (int64_t r = 0; r < s.rows; ++r) {
            double acc = with_bias ? round_to(dt, bias[r]) : 0.0;
            for (int64_t c = 0; c < s.cols; ++c) acc += double(x[i * s.cols + c]) * round_to(dt, w[r * s.cols + c]);
            ref[i * s.rows + r] = acc;
          }
        DevBuf dx = to_device(x);
        DevBuf out = poisoned(s.n * s.rows);
        gpu().matmul(dx.f(), s.n, mw, with_bias ? &mb : nullptr, out.f());
        std::vector<float> got = to_host(out, s.n * s.rows);
        EXPECT_TRUE(close(got, ref, tol));
        Mat cw = cpu().prepare(Tensor{"w", dt, {s.rows, s.cols}, wb.data()}, keep);
        Mat cb = cpu().prepare(Tensor{"b", dt, {s.rows}, bb.data()}, keep);
        std::vector<float> cpu_out(s.n * s.rows, kNaN);
        cpu().matmul(x.data(), s.n, cw, with_bias ? &cb : nullptr, cpu_out.data());
        // The CPU backend sums each dot product in f32 in order (~1e-6 off for 3000 terms).
        EXPECT_TRUE(close(got, widen(cpu_out), std::max(tol, 3e-5))) << "vs CPU backend";
      }
    }
  }
}

// The few-row GEMV kernel (F16 / BF16 weights, n <= 8 rows take it instead of cuBLAS)
// against the CPU backend. Both multiply the f32 activations by the exactly widened
// weights and accumulate in f32, so only the summation order differs (~1e-7 of
// max|ref| at 14336 terms): the tolerance is the f32 one, not the BF16-activation one.
// Shapes: the Llama-3-8B decode projections, a tiny one, odd R (the last warp's spare
// rows), C % 8 != 0 and an odd x_stride (the scalar kernel). Padding between input
// rows is NaN (a read past C poisons the output) and the output has a NaN guard tail
// that must stay untouched.
TEST(CudaOps, GemvFewRowsMatchesCpu) {
  HI_REQUIRE_CUDA();
  std::mt19937 rng(21);
  struct Shape {
    int64_t rows, cols;
  };
  const Shape shapes[] = {{4096, 4096}, {6144, 4096}, {4096, 14336}, {28672, 4096},
                          {7, 40},      {4097, 4096}, {33, 100},     {29, 1}};
  const int ns[] = {1, 2, 3, 4, 5, 8};
  constexpr int64_t kGuard = 64;
  for (DType dt : {DType::BF16, DType::F16}) {
    for (const auto& s : shapes) {
      std::vector<float> w = randn(s.rows * s.cols, rng, 0.05f), bias = randn(s.rows, rng);
      std::vector<uint8_t> wb = encode(dt, w), bb = encode(dt, bias), bf = encode(DType::F32, bias);
      w.clear();
      w.shrink_to_fit();
      std::vector<std::shared_ptr<const void>> keep;
      Mat mw = gpu().prepare(Tensor{"w", dt, {s.rows, s.cols}, wb.data()}, keep);
      Mat cw = cpu().prepare(Tensor{"w", dt, {s.rows, s.cols}, wb.data()}, keep);
      // Bias in the weight dtype and in F32 (both occur in GGUF files).
      Mat mb = gpu().prepare(Tensor{"b", dt, {s.rows}, bb.data()}, keep);
      Mat cb = cpu().prepare(Tensor{"b", dt, {s.rows}, bb.data()}, keep);
      Mat mbf = gpu().prepare(Tensor{"bf", DType::F32, {s.rows}, bf.data()}, keep);
      Mat cbf = cpu().prepare(Tensor{"bf", DType::F32, {s.rows}, bf.data()}, keep);
      struct Variant {
        int64_t stride;  // 0: packed
        const Mat *gb, *cb;
        const char* name;
      };
      const Variant variants[] = {{0, nullptr, nullptr, "packed"},
                                  {s.cols + 8, &mb, &cb, "stride C+8, bias in weight dtype"},
                                  {s.cols + 3, &mbf, &cbf, "stride C+3, F32 bias"}};
      for (int n : ns) {
        for (const auto& v : variants) {
          SCOPED_TRACE(std::string(dtype_name(dt)) + " n=" + std::to_string(n) + " W=[" + std::to_string(s.rows) +
                       ", " + std::to_string(s.cols) + "] " + v.name);
          const int64_t stride = v.stride ? v.stride : s.cols;
          std::vector<float> x = randn(n * stride, rng);
          for (int t = 0; t < n; ++t)
            for (int64_t c = s.cols; c < stride; ++c) x[t * stride + c] = kNaN;
          DevBuf dx = to_device(x);
          DevBuf out = poisoned(n * s.rows + kGuard);
          if (v.stride)
            gpu().matmul_strided(dx.f(), stride, n, mw, v.gb, out.f());
          else
            gpu().matmul(dx.f(), n, mw, v.gb, out.f());
          std::vector<float> got = to_host(out, n * s.rows + kGuard);
          for (int64_t i = n * s.rows; i < n * s.rows + kGuard; ++i)
            ASSERT_TRUE(std::isnan(got[i])) << "write past the output at [" << i << "]";
          got.resize(n * s.rows);
          std::vector<float> cpu_out(n * s.rows, kNaN);
          cpu().matmul_strided(x.data(), stride, n, cw, v.cb, cpu_out.data());
          EXPECT_TRUE(close(got, widen(cpu_out), 1e-5)) << "vs CPU backend";
        }
      }
    }
  }
}

// SwiGLU over fused [gate | up] rows, written in place over the gate half (as the
// executor runs it), against the CPU backend.
// The GEMV's speed knobs (loads in flight, rows per warp) must not change a bit: the
// engine may pick either per GPU without breaking offload exactness.
TEST(CudaOps, GemvTuningsGiveTheSameBits) {
  HI_REQUIRE_CUDA();
  std::mt19937 rng(17);
  cudaStream_t s{};
  ASSERT_EQ(cudaStreamCreate(&s), cudaSuccess);
  {
    cuda::CublasGemm gemm(s);
    for (auto [rows, cols] : {std::pair<int64_t, int64_t>{1000, 4096}, {4096, 14336}, {333, 72}}) {
      std::vector<float> w = randn(rows * cols, rng, 0.05f), x = randn(2 * cols, rng);
      std::vector<uint8_t> wb = encode(DType::BF16, w);
      DevBuf dw = to_device(wb), dx = to_device(x);
      const Mat m{DType::BF16, dw.get(), rows, cols};
      for (int n : {1, 2}) {
        SCOPED_TRACE("rows=" + std::to_string(rows) + " cols=" + std::to_string(cols) + " n=" + std::to_string(n));
        std::vector<std::vector<float>> outs;
        // The five fixed tunings and the default, which picks one by the matrix.
        for (cuda::GemvTuning t : {cuda::GemvTuning{2, 2, false}, cuda::GemvTuning{4, 2, false},
                                   cuda::GemvTuning{2, 1, false}, cuda::GemvTuning{4, 1, false},
                                   cuda::GemvTuning{8, 1, false}, cuda::GemvTuning{}}) {
          gemm.set_gemv_tuning(t);
          DevBuf out = poisoned(n * rows);
          gemm.matmul(dx.f(), n, m, nullptr, out.f());
          ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
          outs.push_back(to_host(out, n * rows));
        }
        for (size_t i = 1; i < outs.size(); ++i)
          EXPECT_EQ(0, std::memcmp(outs[0].data(), outs[i].data(), outs[0].size() * sizeof(float))) << "tuning " << i;
        EXPECT_FALSE(std::isnan(outs[0][0]));
      }
    }
  }
  cudaStreamDestroy(s);
}

// A decode token's QKV GEMV with the RoPE and K/V store in its epilogue gives the bits
// of the GEMV then the RoPE + KV store kernel: the rotated [q | k | v] row and every
// stored K/V byte. MHA, GQA and MQA, head_dim 64 and 128, biases of two dtypes, KV in
// every dtype, positions from 0 to past a million. The launcher must take each case
// (false would mean the fused kernel never ran), and the backend op must give the same.
TEST(CudaOps, QkvGemvWithRopeAndStoreEqualsTheTwoKernels) {
  HI_REQUIRE_CUDA();
  std::mt19937 rng(29);
  cudaStream_t s{};
  ASSERT_EQ(cudaStreamCreate(&s), cudaSuccess);
  {
    cuda::CublasGemm gemm(s);
    struct Case {
      int n_heads, n_kv, hd, cols;
      bool has_bias;
      DType bias, kv;
      int64_t pos;
    };
    for (const Case c : {Case{32, 8, 128, 4096, false, DType::F32, DType::BF16, 4095},
                         Case{8, 1, 64, 256, true, DType::BF16, DType::F16, 0},
                         Case{4, 4, 128, 520, true, DType::F32, DType::F32, 1000003},
                         Case{12, 4, 64, 1024, false, DType::F32, DType::BF16, 77}}) {
      SCOPED_TRACE("heads " + std::to_string(c.n_heads) + "/" + std::to_string(c.n_kv) + " hd " + std::to_string(c.hd) +
                   " pos " + std::to_string(c.pos));
      const int n_rot = c.n_heads + c.n_kv;
      const int64_t R = int64_t{n_rot + c.n_kv} * c.hd;
      std::vector<float> w = randn(R * c.cols, rng, 0.05f), x = randn(c.cols, rng), b = randn(R, rng);
      std::vector<uint8_t> wb = encode(DType::BF16, w);
      DevBuf dw = to_device(wb), dx = to_device(x);
      const bool has_bias = c.has_bias;
      DevBuf db = has_bias ? to_device(encode(c.bias, b)) : DevBuf{};
      const Mat m{DType::BF16, dw.get(), R, c.cols};
      const Mat mb{c.bias, db.get(), R, 1};
      std::vector<double> freq(static_cast<size_t>(c.hd / 2));
      for (size_t i = 0; i < freq.size(); ++i) freq[i] = std::pow(500000.0, -2.0 * static_cast<double>(i) / c.hd);
      DevBuf dfreq = to_device(freq);
      const size_t side = dtype_bytes(c.kv, c.hd);  // one head's K (or V) row
      std::vector<uint8_t> poison(2 * side * static_cast<size_t>(c.n_kv), 0xff);
      DevBuf kv_fused = to_device(poison), kv_two = to_device(poison);
      auto dsts = [&](const DevBuf& kv, int side_i) {  // K heads reversed, V heads in order
        std::vector<void*> d;
        for (int h = 0; h < c.n_kv; ++h)
          d.push_back(static_cast<uint8_t*>(kv.get()) +
                      side * static_cast<size_t>(side_i == 0 ? c.n_kv - 1 - h : c.n_kv + h));
        return d;
      };
      const std::vector<void*> fk = dsts(kv_fused, 0), fv = dsts(kv_fused, 1), tk = dsts(kv_two, 0),
                               tv = dsts(kv_two, 1);
      DevBuf fused = poisoned(R), two = poisoned(R);
      ASSERT_TRUE(gemm.matmul_rope_store(dx.f(), 1, m, has_bias ? &mb : nullptr, fused.f(), n_rot, c.n_kv, c.hd, c.pos,
                                         static_cast<const double*>(dfreq.get()), c.kv, fk.data(), fv.data()));
      gemm.matmul(dx.f(), 1, m, has_bias ? &mb : nullptr, two.f());
      const int64_t k_off = int64_t{c.n_heads} * c.hd;
      cuda::launch_rope_store_kv_heads(two.f(), R, 1, n_rot, c.hd, c.pos, static_cast<const double*>(dfreq.get()),
                                       two.f() + k_off, two.f() + k_off + int64_t{c.n_kv} * c.hd, R, c.n_kv, c.kv,
                                       tk.data(), tv.data(), s);
      ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
      const std::vector<float> got = to_host(fused, R), want = to_host(two, R);
      EXPECT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(float))) << differing(got, want);
      for (float v : got) ASSERT_FALSE(std::isnan(v));
      std::vector<uint8_t> kv_got(poison.size()), kv_want(poison.size());
      gpu().download(kv_got.data(), kv_fused.get(), kv_got.size());
      gpu().download(kv_want.data(), kv_two.get(), kv_want.size());
      EXPECT_EQ(kv_got, kv_want);
      EXPECT_NE(kv_got, poison) << "no K/V stored";

      // The backend op (the fused kernel where it applies) leaves the same row and K/V.
      DevBuf via_op = poisoned(R), kv_op = to_device(poison);
      const std::vector<void*> ok = dsts(kv_op, 0), ov = dsts(kv_op, 1);
      const RopeArgs r{via_op.f(), R, 1, n_rot, c.hd, c.pos, freq.data()};
      gpu().matmul_rope_store_kv(dx.get(), DType::F32, 1, m, has_bias ? &mb : nullptr, r, c.n_kv, c.kv, ok.data(),
                                 ov.data());
      const std::vector<float> got_op = to_host(via_op, R);
      EXPECT_EQ(0, std::memcmp(got_op.data(), want.data(), got_op.size() * sizeof(float))) << differing(got_op, want);
      std::vector<uint8_t> kv_got_op(poison.size());
      gpu().download(kv_got_op.data(), kv_op.get(), kv_got_op.size());
      EXPECT_EQ(kv_got_op, kv_want);
    }
  }
  cudaStreamDestroy(s);
}

TEST(CudaOps, SwigluOverFusedRowsInPlace) {
  HI_REQUIRE_CUDA();
  std::mt19937 rng(13);
  // Few rows, and rows of odd width: the scalar kernel; 100 rows of 1000: four
  // columns a thread (prefill), which must give the scalar kernel's bits.
  struct Case {
    int rows;
    int64_t ffn;
  };
  for (const Case c : {Case{37, 1000}, Case{100, 1000}, Case{100, 1002}}) {
    SCOPED_TRACE("rows " + std::to_string(c.rows) + ", ffn " + std::to_string(c.ffn));
    const int rows = c.rows;
    const int64_t ffn = c.ffn, stride = 2 * ffn;
    std::vector<float> gu = randn(rows * stride, rng, 3.f);
    DevBuf d = to_device(gu);
    gpu().swiglu(d.f(), d.f() + ffn, rows, ffn, stride, d.f(), stride);
    std::vector<float> cpu_gu = gu;
    cpu().swiglu(cpu_gu.data(), cpu_gu.data() + ffn, rows, ffn, stride, cpu_gu.data(), stride);
    std::vector<double> ref(gu.size());
    for (int r = 0; r < rows; ++r)
      for (int64_t i = 0; i < stride; ++i) {
        const double g = gu[r * stride + i];
        ref[r * stride + i] = i < ffn ? g / (1.0 + std::exp(-g)) * gu[r * stride + ffn + i] : g;  // up half untouched
      }
    const std::vector<float> got = to_host(d, gu.size());
    EXPECT_TRUE(close(got, ref, 1e-6));
    EXPECT_TRUE(close(got, widen(cpu_gu), 1e-6)) << "vs CPU backend";
    // The last row again on its own (one row: the decode kernel), bit for bit.
    const std::vector<float> last(gu.end() - stride, gu.end());
    DevBuf d1 = to_device(last);
    gpu().swiglu(d1.f(), d1.f() + ffn, 1, ffn, stride, d1.f(), stride);
    const std::vector<float> got1 = to_host(d1, stride);
    EXPECT_EQ(std::memcmp(got1.data(), got.data() + (rows - 1) * stride, stride * sizeof(float)), 0)
        << "a row alone differs from the same row among many";
  }
}

// A backend with the SwiGLU fused into decode's gate/up GEMV (opt-in); buffers and
// weights of gpu() are valid in it (same device).
Backend& gpu_fused_swiglu() {
  static std::unique_ptr<Backend> b = make_cuda_backend_with_env("HEADINFER_CUDA_FUSE_SWIGLU", "1");
  return *b;
}

// The gate/up projection with the SwiGLU in the GEMV's epilogue (decode rows): the
// gate half equals matmul then swiglu bit for bit (the same per-row sums, the same
// SwiGLU expression). Rows past the GEMV (n = 5 here) take those two ops instead.
// Against the CPU backend at the f32 tolerance.
TEST(CudaOps, MatmulSwigluEqualsMatmulThenSwiglu) {
  HI_REQUIRE_CUDA();
  std::mt19937 rng(21);
  const std::pair<int64_t, int64_t> shapes[] = {{1000, 4096}, {512, 256}, {14336, 4096}};  // ffn, cols
  for (DType dt : {DType::BF16, DType::F16}) {
    for (auto [ffn, cols] : shapes) {
      for (int n : {1, 2, 5}) {
        SCOPED_TRACE(std::string(dtype_name(dt)) + " n=" + std::to_string(n) + " ffn=" + std::to_string(ffn) +
                     " cols=" + std::to_string(cols));
        const int64_t R = 2 * ffn;
        std::vector<float> x = randn(n * cols, rng), w = randn(R * cols, rng, 0.05f);
        std::vector<uint8_t> wb = encode(dt, w);
        std::vector<std::shared_ptr<const void>> keep;
        Mat mw = gpu().prepare(Tensor{"w", dt, {R, cols}, wb.data()}, keep);
        DevBuf dx = to_device(x), fused = poisoned(n * R), split = poisoned(n * R);
        gpu_fused_swiglu().matmul_swiglu(dx.f(), n, mw, fused.f());
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        gpu().matmul(dx.f(), n, mw, nullptr, split.f());
        gpu().swiglu(split.f(), split.f() + ffn, n, ffn, R, split.f(), R);
        const std::vector<float> a = to_host(fused, n * R), b = to_host(split, n * R);
        for (int t = 0; t < n; ++t)
          ASSERT_EQ(0, std::memcmp(a.data() + t * R, b.data() + t * R, ffn * sizeof(float))) << "row " << t;
        if (n <= 2) {  // the fused kernel itself takes decode rows of these shapes
          DevBuf direct = poisoned(n * R);
          ASSERT_TRUE(cuda::launch_gemv_swiglu(dx.f(), cols, n, mw.data, dt, static_cast<int>(R),
                                               static_cast<int>(cols), direct.f(), R, nullptr));
          const std::vector<float> d = to_host(direct, n * R);
          for (int t = 0; t < n; ++t)
            ASSERT_EQ(0, std::memcmp(d.data() + t * R, b.data() + t * R, ffn * sizeof(float))) << "row " << t;
        }
        std::vector<float> cg(n * R, kNaN);
        Mat cw = cpu().prepare(Tensor{"w", dt, {R, cols}, wb.data()}, keep);
        cpu().matmul_swiglu(x.data(), n, cw, cg.data());
        std::vector<float> got, want;
        for (int t = 0; t < n; ++t) {
          got.insert(got.end(), a.begin() + t * R, a.begin() + t * R + ffn);
          want.insert(want.end(), cg.begin() + t * R, cg.begin() + t * R + ffn);
        }
        // n = 5 goes through cuBLAS, which rounds the activations to the weight dtype.
        EXPECT_TRUE(close(got, widen(want), n <= 2 ? 3e-5 : dt == DType::F16 ? 3e-3 : 1e-2)) << "vs CPU backend";
      }
    }
  }
}

// A backend that hands prefill's GEMM inputs over in the weight dtype (opt-in).
Backend& gpu_bf16_rows() {
  static std::unique_ptr<Backend> b = make_cuda_backend_with_env("HEADINFER_CUDA_BF16_ROWS", "1");
  return *b;
}
// The f32 rows, converted before each GEMM (HEADINFER_CUDA_BF16_ROWS=0).
Backend& gpu_f32_rows() {
  static std::unique_ptr<Backend> b = make_cuda_backend_with_env("HEADINFER_CUDA_BF16_ROWS", "0");
  return *b;
}

// The norm writing a GEMM's rows in the weight dtype: each value is the f32 norm's,
// rounded (the same bits as the f32 rows converted), and x gets the same sum. Then the
// GEMM over those rows gives matmul's bits over the f32 rows (the same cuBLAS call on
// the same BF16 rows: n within one of matmul's slices). Few rows keep f32 (the GEMV).
TEST(CudaOps, NormRowsInTheWeightDtypeFeedTheGemmUnchanged) {
  HI_REQUIRE_CUDA();
  std::mt19937 rng(32);
  for (DType dt : {DType::BF16, DType::F16}) {
    for (int64_t cols : {int64_t{4096}, int64_t{200}, int64_t{30}}) {
      for (bool with_add : {false, true}) {
        const int n = 67, rows_out = 96;
        SCOPED_TRACE(std::string(dtype_name(dt)) + " cols=" + std::to_string(cols) + (with_add ? " +add" : ""));
        std::vector<float> x = randn(n * cols, rng), y = randn(n * cols, rng), nw = randn(cols, rng),
                           w = randn(rows_out * cols, rng, 0.05f), bias = randn(rows_out, rng);
        std::vector<uint8_t> nwb = encode(DType::F32, nw), wb = encode(dt, w), bb = encode(dt, bias);
        std::vector<std::shared_ptr<const void>> keep;
        const Mat mn = gpu().prepare(Tensor{"norm", DType::F32, {cols}, nwb.data()}, keep);
        const Mat mw = gpu().prepare(Tensor{"w", dt, {rows_out, cols}, wb.data()}, keep);
        const Mat mb = gpu().prepare(Tensor{"b", dt, {rows_out}, bb.data()}, keep);
        EXPECT_EQ(gpu_bf16_rows().gemm_rows_dtype(mw, n), dt);
        EXPECT_EQ(gpu_bf16_rows().gemm_rows_dtype(mw, 1), DType::F32);
        EXPECT_EQ(gpu_f32_rows().gemm_rows_dtype(mw, n), DType::F32);
        EXPECT_EQ(gpu().gemm_rows_dtype(mw, n), dt) << "the default";
        DevBuf x1 = to_device(x), x2 = to_device(x), dy = to_device(y), h32 = poisoned(n * cols),
               h16 = poisoned(n * cols), o32 = poisoned(n * rows_out), o16 = poisoned(n * rows_out);
        gpu().norm_rows(x1.f(), with_add ? dy.f() : nullptr, mn, 1e-5f, n, h32.f(), DType::F32);
        gpu_bf16_rows().norm_rows(x2.f(), with_add ? dy.f() : nullptr, mn, 1e-5f, n, h16.get(), dt);
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        const std::vector<float> a = to_host(h32, n * cols), sx1 = to_host(x1, n * cols), sx2 = to_host(x2, n * cols);
        EXPECT_EQ(0, std::memcmp(sx1.data(), sx2.data(), sx1.size() * sizeof(float))) << "x after the add";
        std::vector<uint16_t> b(n * cols);
        ASSERT_EQ(cudaMemcpy(b.data(), h16.get(), b.size() * 2, cudaMemcpyDeviceToHost), cudaSuccess);
        for (size_t i = 0; i < b.size(); ++i) {
          const uint16_t want = dt == DType::BF16 ? f32_to_bf16(a[i]) : f32_to_f16(a[i]);
          ASSERT_EQ(b[i], want) << "value " << i << " (f32 " << a[i] << ")";
        }
        gpu().matmul_rows(h32.get(), DType::F32, n, mw, &mb, o32.f());
        gpu_bf16_rows().matmul_rows(h16.get(), dt, n, mw, &mb, o16.f());
        const std::vector<float> p = to_host(o32, n * rows_out), q = to_host(o16, n * rows_out);
        EXPECT_EQ(0, std::memcmp(p.data(), q.data(), p.size() * sizeof(float))) << "the GEMM over the rows";
      }
    }
  }
}

// The MLP with gate/up and the SwiGLU rounded to the weight dtype: taken for the rows
// cuBLAS takes (not the GEMV's), from f32 rows or the weight dtype's, against the CPU
// backend and the f32 rows (HEADINFER_CUDA_BF16_ROWS=0) at the weight dtype's tolerance. Shapes:
// Llama-3-8B's, a small one, and ffn % 4 != 0 with 2 * ffn barely above hidden (the
// scalar kernels; f32 input converted into the scratch's second half).
TEST(CudaOps, MlpInTheWeightDtypeMatchesCpu) {
  HI_REQUIRE_CUDA();
  std::mt19937 rng(31);
  struct Shape {
    int64_t hidden, ffn;
    std::vector<int> ns;
  };
  const Shape shapes[] = {{4096, 14336, {2, 67}}, {256, 704, {1, 9, 300}}, {200, 101, {3, 70}}};
  for (DType dt : {DType::BF16, DType::F16}) {
    const double tol = dt == DType::F16 ? 5e-3 : 2e-2;
    for (const Shape& sh : shapes) {
      const int64_t R = 2 * sh.ffn;
      std::vector<float> wgu = randn(R * sh.hidden, rng, 0.05f), wd = randn(sh.hidden * sh.ffn, rng, 0.05f);
      std::vector<uint8_t> gub = encode(dt, wgu), db = encode(dt, wd);
      std::vector<std::shared_ptr<const void>> keep;
      const Mat ggu = gpu().prepare(Tensor{"gu", dt, {R, sh.hidden}, gub.data()}, keep);
      const Mat gd = gpu().prepare(Tensor{"d", dt, {sh.hidden, sh.ffn}, db.data()}, keep);
      const Mat cgu = cpu().prepare(Tensor{"gu", dt, {R, sh.hidden}, gub.data()}, keep);
      const Mat cd = cpu().prepare(Tensor{"d", dt, {sh.hidden, sh.ffn}, db.data()}, keep);
      for (int n : sh.ns) {
        SCOPED_TRACE(std::string(dtype_name(dt)) + " n=" + std::to_string(n) + " hidden=" + std::to_string(sh.hidden) +
                     " ffn=" + std::to_string(sh.ffn));
        const bool fused = n > cuda::kGemvMaxRows;
        EXPECT_EQ(gpu_bf16_rows().mlp_rows_dtype(n, ggu, gd), fused ? dt : DType::F32);
        EXPECT_EQ(gpu_f32_rows().mlp_rows_dtype(n, ggu, gd), DType::F32);
        std::vector<float> x = randn(n * sh.hidden, rng);
        std::vector<uint8_t> x16 = encode(dt, x);
        DevBuf dx = to_device(x), dx16(x16.size()), gu = poisoned(n * R), out = poisoned(n * sh.hidden),
               gu2 = poisoned(n * R), out2 = poisoned(n * sh.hidden), out3 = poisoned(n * sh.hidden);
        ASSERT_EQ(cudaMemcpy(dx16.get(), x16.data(), x16.size(), cudaMemcpyHostToDevice), cudaSuccess);
        gpu_bf16_rows().mlp(dx.f(), DType::F32, n, ggu, gd, gu.f(), out.f());
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        gpu_f32_rows().mlp(dx.f(), DType::F32, n, ggu, gd, gu2.f(), out2.f());
        const std::vector<float> got = to_host(out, n * sh.hidden), plain = to_host(out2, n * sh.hidden);
        std::vector<float> want(n * sh.hidden, kNaN), cgu_scratch(n * R, kNaN);
        cpu().mlp(x.data(), DType::F32, n, cgu, cd, cgu_scratch.data(), want.data());
        EXPECT_TRUE(close(got, widen(want), tol)) << "vs CPU backend";
        EXPECT_TRUE(close(got, widen(plain), tol)) << "vs the f32 rows";
        if (!fused) {
          EXPECT_EQ(0, std::memcmp(got.data(), plain.data(), got.size() * sizeof(float)));
          continue;
        }
        // Rows already in the weight dtype: what the f32 rows are converted to.
        gpu_bf16_rows().mlp(dx16.get(), dt, n, ggu, gd, gu.f(), out3.f());
        const std::vector<float> got16 = to_host(out3, n * sh.hidden);
        EXPECT_TRUE(close(got16, widen(want), tol)) << "from rows of the dtype, vs CPU backend";
        EXPECT_EQ(0, std::memcmp(got.data(), got16.data(), got.size() * sizeof(float)))
            << "from rows of the dtype: " << differing(got, got16);
        // The same call again: the same bits.
        DevBuf out4 = poisoned(n * sh.hidden);
        gpu_bf16_rows().mlp(dx.f(), DType::F32, n, ggu, gd, gu.f(), out4.f());
        const std::vector<float> again = to_host(out4, n * sh.hidden);
        EXPECT_EQ(0, std::memcmp(got.data(), again.data(), got.size() * sizeof(float)))
            << "the f32 rows again: " << differing(got, again);
      }
    }
  }
}

// Input rows further apart than the weight's columns (the down projection reading
// the gate half of fused rows): the numbers of the packed input.
TEST(CudaOps, MatmulStridedInputEqualsPacked) {
  HI_REQUIRE_CUDA();
  std::mt19937 rng(14);
  const int64_t rows = 96, cols = 200, stride = 2 * cols + 8;
  for (DType dt : kWeightTypes) {
    for (int n : {1, 9, 300}) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + " n=" + std::to_string(n));
      std::vector<float> xs = randn(n * stride, rng), w = randn(rows * cols, rng, 0.05f);
      std::vector<float> packed(n * cols);
      for (int t = 0; t < n; ++t)
        for (int64_t c = 0; c < cols; ++c) packed[t * cols + c] = xs[t * stride + c];
      std::vector<uint8_t> wb = encode(dt, w);
      std::vector<std::shared_ptr<const void>> keep;
      Mat mw = gpu().prepare(Tensor{"w", dt, {rows, cols}, wb.data()}, keep);
      DevBuf dxs = to_device(xs), dxp = to_device(packed);
      DevBuf out_s = poisoned(n * rows), out_p = poisoned(n * rows);
      gpu().matmul_strided(dxs.f(), stride, n, mw, nullptr, out_s.f());
      gpu().matmul(dxp.f(), n, mw, nullptr, out_p.f());
      const std::vector<float> gs = to_host(out_s, n * rows), gp = to_host(out_p, n * rows);
      EXPECT_EQ(0, std::memcmp(gs.data(), gp.data(), gs.size() * sizeof(float)));
      Mat cw = cpu().prepare(Tensor{"w", dt, {rows, cols}, wb.data()}, keep);
      std::vector<float> cpu_out(n * rows, kNaN);
      cpu().matmul_strided(xs.data(), stride, n, cw, nullptr, cpu_out.data());
      EXPECT_TRUE(close(gs, widen(cpu_out), dt == DType::F32 ? 1e-5 : 1e-2)) << "vs CPU backend";
    }
  }
}

TEST(CudaOps, MatmulQ8_0IsDequantizedAtPrepare) {
  HI_REQUIRE_CUDA();
  std::mt19937 rng(5);
  const int64_t rows = 48, cols = 128;
  const int n = 5;
  std::vector<uint8_t> q((rows * cols / kQ8_0Block) * kQ8_0BlockBytes);
  for (size_t b = 0; b < q.size() / kQ8_0BlockBytes; ++b) {
    uint16_t scale = f32_to_f16(0.01f + 0.001f * static_cast<float>(b % 7));
    std::memcpy(q.data() + b * kQ8_0BlockBytes, &scale, 2);
    for (int i = 0; i < kQ8_0Block; ++i) q[b * kQ8_0BlockBytes + 2 + i] = static_cast<uint8_t>(rng() % 255);
  }
  std::vector<float> w(rows * cols);
  to_f32(DType::Q8_0, q.data(), w.data(), rows * cols);
  std::vector<std::shared_ptr<const void>> keep;
  Mat m = gpu().prepare(Tensor{"wq", DType::Q8_0, {rows, cols}, q.data()}, keep);
  EXPECT_EQ(m.dtype, DType::F32);
  EXPECT_EQ(m.rows, rows);
  EXPECT_EQ(m.cols, cols);
  std::vector<float> x = randn(n * cols, rng);
  std::vector<double> ref(n * rows);
  for (int i = 0; i < n; ++i)
    for (int64_t r = 0; r < rows; ++r) {
      double acc = 0;
      for (int64_t c = 0; c < cols; ++c) acc += double(x[i * cols + c]) * w[r * cols + c];
      ref[i * rows + r] = acc;
    }
  DevBuf dx = to_device(x);
  DevBuf out = poisoned(n * rows);
  gpu().matmul(dx.f(), n, m, nullptr, out.f());
  std::vector<float> got = to_host(out, n * rows);
  EXPECT_TRUE(close(got, ref, 1e-5));
  std::vector<float> cpu_out(n * rows, kNaN);
  cpu().matmul(x.data(), n, cpu().prepare(Tensor{"wq", DType::Q8_0, {rows, cols}, q.data()}, keep), nullptr,
               cpu_out.data());
  EXPECT_TRUE(close(got, widen(cpu_out), 1e-5)) << "vs CPU backend";
}

std::vector<double> llama_inv_freq(int head_dim, double theta) {
  std::vector<double> f(head_dim / 2);
  for (int i = 0; i < head_dim / 2; ++i) f[i] = 1.0 / std::pow(theta, 2.0 * i / head_dim);
  return f;
}

TEST(CudaOps, RopeExactAtLargePositions) {
  HI_REQUIRE_CUDA();
  std::mt19937 rng(6);
  const int n_heads = 3;
  for (int hd : {64, 128}) {
    for (int n_tokens : {1, 5, 17}) {
      for (int64_t pos0 : {int64_t{0}, int64_t{12345}, int64_t{1048570}, int64_t{3000000}, int64_t{10000000}}) {
        SCOPED_TRACE("hd=" + std::to_string(hd) + " tokens=" + std::to_string(n_tokens) +
                     " pos0=" + std::to_string(pos0));
        const int64_t stride = n_heads * hd + 7;  // trailing columns must stay untouched
        std::vector<float> x = randn(n_tokens * stride, rng);
        std::vector<double> inv = llama_inv_freq(hd, 500000.0);
        std::vector<double> ref(x.begin(), x.end());
        for (int t = 0; t < n_tokens; ++t)
          for (int h = 0; h < n_heads; ++h)
            for (int i = 0; i < hd / 2; ++i) {
              const double a = static_cast<double>(pos0 + t) * inv[i];
              const double c = std::cos(a), s = std::sin(a);
              const int64_t o = t * stride + h * hd;
              const double x0 = x[o + i], x1 = x[o + i + hd / 2];
              ref[o + i] = x0 * c - x1 * s;
              ref[o + i + hd / 2] = x1 * c + x0 * s;
            }
        DevBuf dx = to_device(x);
        RopeArgs a;
        a.x = dx.f();
        a.stride = stride;
        a.n_tokens = n_tokens;
        a.n_heads = n_heads;
        a.head_dim = hd;
        a.pos0 = pos0;
        a.inv_freq = inv.data();
        gpu().rope(a);
        std::vector<float> got = to_host(dx, x.size());
        EXPECT_TRUE(close(got, ref, 2e-6));
        std::vector<float> cx = x;
        a.x = cx.data();
        cpu().rope(a);
        EXPECT_TRUE(close(got, widen(cx), 2e-6)) << "vs CPU backend";
      }
    }
  }
}

TEST(CudaOps, RopeTableCacheFollowsContent) {
  HI_REQUIRE_CUDA();
  // The same host pointer with new values must not reuse the old device table.
  std::mt19937 rng(7);
  const int hd = 64, n_tokens = 3;
  std::vector<double> inv = llama_inv_freq(hd, 10000.0);
  for (double theta : {10000.0, 500000.0}) {
    std::vector<double> fresh = llama_inv_freq(hd, theta);
    std::copy(fresh.begin(), fresh.end(), inv.begin());
    std::vector<float> x = randn(n_tokens * hd, rng);
    std::vector<double> ref(x.begin(), x.end());
    for (int t = 0; t < n_tokens; ++t)
      for (int i = 0; i < hd / 2; ++i) {
        const double a = (100.0 + t) * inv[i];
        const double x0 = x[t * hd + i], x1 = x[t * hd + i + hd / 2];
        ref[t * hd + i] = x0 * std::cos(a) - x1 * std::sin(a);
        ref[t * hd + i + hd / 2] = x1 * std::cos(a) + x0 * std::sin(a);
      }
    DevBuf dx = to_device(x);
    RopeArgs a;
    a.x = dx.f();
    a.stride = hd;
    a.n_tokens = n_tokens;
    a.n_heads = 1;
    a.head_dim = hd;
    a.pos0 = 100;
    a.inv_freq = inv.data();
    gpu().rope(a);
    EXPECT_TRUE(close(to_host(dx, x.size()), ref, 2e-6)) << "theta " << theta;
  }
}

TEST(CudaOps, SwigluAndAdd) {
  HI_REQUIRE_CUDA();
  std::mt19937 rng(8);
  for (int64_t n : {int64_t{1}, int64_t{1000}, int64_t{100003}}) {
    SCOPED_TRACE("n=" + std::to_string(n));
    std::vector<float> g = randn(n, rng, 4.f), u = randn(n, rng);
    g[0] = -100.f;  // silu of a large negative: -0, not NaN
    std::vector<double> ref(n), sum(n);
    for (int64_t i = 0; i < n; ++i) {
      ref[i] = g[i] / (1.0 + std::exp(-double(g[i]))) * u[i];
      sum[i] = double(g[i]) + u[i];
    }
    DevBuf dg = to_device(g), du = to_device(u);
    DevBuf out = poisoned(n);
    gpu().swiglu(dg.f(), du.f(), 1, n, n, out.f(), n);
    std::vector<float> got = to_host(out, n);
    EXPECT_TRUE(close(got, ref, 1e-6)) << "swiglu";
    std::vector<float> cpu_out(n, kNaN);
    cpu().swiglu(g.data(), u.data(), 1, n, n, cpu_out.data(), n);
    EXPECT_TRUE(close(got, widen(cpu_out), 1e-6)) << "swiglu vs CPU backend";
    gpu().add(dg.f(), du.f(), n);
    EXPECT_TRUE(close(to_host(dg, n), sum, 1e-7)) << "add";
    cpu().add(g.data(), u.data(), n);
    EXPECT_TRUE(close(to_host(dg, n), widen(g), 0.0)) << "add vs CPU backend";
  }
}

// store_kv of n rows of hd columns, stride apart, in every KV dtype: the bytes of the
// host conversion and of the CPU backend.
void store_kv_case(std::mt19937& rng, int n, int hd, int64_t stride) {
  std::vector<float> src = randn(n * stride, rng);
  src[0] = 70000.f;     // overflows F16 to inf
  src[1] = 3.0e-6f;     // F16 subnormal
  src[2] = -1.0e-40f;   // f32 subnormal
  src[3] = 1.00390625f; // a BF16 rounding tie
  for (DType dt : kWeightTypes) {
    SCOPED_TRACE(dtype_name(dt));
    std::vector<float> rows(n * hd);
    for (int i = 0; i < n; ++i)
      for (int d = 0; d < hd; ++d) rows[i * hd + d] = src[i * stride + d];
    std::vector<uint8_t> want = encode(dt, rows);
    DevBuf dsrc = to_device(src);
    DevBuf dst = to_device(std::vector<uint8_t>(want.size(), 0xff));
    gpu().store_kv(dsrc.f(), stride, n, hd, dt, dst.get());
    std::vector<uint8_t> got(want.size());
    gpu().download(got.data(), dst.get(), got.size());
    size_t bad = 0;
    for (size_t i = 0; i < got.size(); ++i) bad += got[i] != want[i];
    EXPECT_EQ(bad, 0u) << "bytes differing from the host conversion (common/half.hpp)";
    std::vector<uint8_t> cpu_bytes(want.size(), 0xff);
    cpu().store_kv(src.data(), stride, n, hd, dt, cpu_bytes.data());
    EXPECT_TRUE(cpu_bytes == got) << "bytes differing from the CPU backend's store_kv";
  }
}

TEST(CudaOps, StoreKvIsBitExact) {
  HI_REQUIRE_CUDA();
  std::mt19937 rng(9);
  // 19 rows at an odd stride: the scalar kernel; 80 at a stride of whole vectors:
  // four columns a thread. Both must write the host conversion's bytes.
  const int hd = 128;
  for (const auto& [n, stride] : {std::pair<int, int64_t>{19, 3 * hd + 5}, std::pair<int, int64_t>{80, 3 * hd + 4}}) {
    SCOPED_TRACE(std::to_string(n) + " rows");
    store_kv_case(rng, n, hd, stride);
  }
}

// A layer's new K/V of every head in one launch, into separate destinations: the
// bytes the CPU backend's per-head store_kv writes. 70 heads: two launches of up to 64.
TEST(CudaOps, StoreKvHeadsMatchesPerHeadStores) {
  HI_REQUIRE_CUDA();
  std::mt19937 rng(12);
  for (const int n_heads : {1, 8, 70}) {
    for (const int n : {1, 37}) {
      const int hd = 64;
      const int64_t stride = 3 * int64_t{n_heads} * hd;  // fused [q | k | v] rows: K and V are a third each
      std::vector<float> src = randn(static_cast<size_t>(n * stride), rng);
      for (DType dt : kWeightTypes) {
        SCOPED_TRACE(std::string(dtype_name(dt)) + " heads " + std::to_string(n_heads) + " rows " + std::to_string(n));
        const size_t side = dtype_bytes(dt, int64_t{n} * hd);
        DevBuf dsrc = to_device(src);
        DevBuf dst = to_device(std::vector<uint8_t>(2 * side * static_cast<size_t>(n_heads), 0xff));
        std::vector<void*> dk, dv;
        for (int h = 0; h < n_heads; ++h) {
          // Heads in reverse order: destinations need not follow the source order.
          uint8_t* base = static_cast<uint8_t*>(dst.get()) + 2 * side * static_cast<size_t>(n_heads - 1 - h);
          dk.push_back(base);
          dv.push_back(base + side);
        }
        const float* k = dsrc.f() + int64_t{n_heads} * hd;
        gpu().store_kv_heads(k, k + int64_t{n_heads} * hd, stride, n, n_heads, hd, dt, dk.data(), dv.data());
        std::vector<uint8_t> got(dst.bytes());
        gpu().download(got.data(), dst.get(), got.size());
        std::vector<uint8_t> want(got.size(), 0xff);
        const float* hk = src.data() + int64_t{n_heads} * hd;
        for (int h = 0; h < n_heads; ++h) {
          uint8_t* base = want.data() + 2 * side * static_cast<size_t>(n_heads - 1 - h);
          cpu().store_kv(hk + int64_t{h} * hd, stride, n, hd, dt, base);
          cpu().store_kv(hk + int64_t{n_heads + h} * hd, stride, n, hd, dt, base + side);
        }
        EXPECT_TRUE(want == got) << "bytes differing from the CPU backend's per-head store_kv";
      }
    }
  }
}

// The one-launch RoPE + KV store against rope() then store_kv_heads(): the rotated
// rows and the stored K/V bytes are the same bits (decode, chunks with a partial last
// tile, GQA and MHA widths, every KV dtype, more KV heads than one launch takes; rows
// of 16-byte quads, which take the tile kernel, and rows that do not).
TEST(CudaOps, RopeStoreKvHeadsEqualsRopeThenStore) {
  HI_REQUIRE_CUDA();
  std::mt19937 rng(13);
  for (const auto& [n_q, n_kv, hd] : {std::tuple{32, 8, 128}, std::tuple{4, 4, 64}, std::tuple{70, 70, 64}}) {
    for (const int pad : {5, 4})
      for (const int n : {1, 37, 300}) {
        const int64_t q_w = int64_t{n_q} * hd, kv_w = int64_t{n_kv} * hd;
        const int64_t stride = q_w + 2 * kv_w + pad;  // fused [q | k | v] rows and a few unused columns
        const std::vector<float> src = randn(static_cast<size_t>(n * stride), rng);
        const std::vector<double> inv = llama_inv_freq(hd, 500000.0);
        for (DType dt : kWeightTypes) {
          SCOPED_TRACE(std::string(dtype_name(dt)) + " heads " + std::to_string(n_q) + "/" + std::to_string(n_kv) +
                       " rows " + std::to_string(n) + " stride " + std::to_string(stride));
          const size_t side = dtype_bytes(dt, int64_t{n} * hd);
          auto run = [&](bool fused, std::vector<float>& rows, std::vector<uint8_t>& kv) {
            DevBuf x = to_device(src);
            DevBuf dst = to_device(std::vector<uint8_t>(2 * side * static_cast<size_t>(n_kv), 0xff));
            std::vector<void*> dk, dv;
            for (int h = 0; h < n_kv; ++h) {
              uint8_t* base = static_cast<uint8_t*>(dst.get()) + 2 * side * static_cast<size_t>(h);
              dk.push_back(base);
              dv.push_back(base + side);
            }
            const RopeArgs r{x.f(), stride, n, n_q + n_kv, hd, 1000003, inv.data()};
            const float* k = x.f() + q_w;
            if (fused) {
              gpu().rope_store_kv_heads(r, k, k + kv_w, stride, n, n_kv, hd, dt, dk.data(), dv.data());
            } else {
              gpu().rope(r);
              gpu().store_kv_heads(k, k + kv_w, stride, n, n_kv, hd, dt, dk.data(), dv.data());
            }
            rows = to_host(x, src.size());
            kv.resize(dst.bytes());
            gpu().download(kv.data(), dst.get(), kv.size());
          };
          std::vector<float> rows_a, rows_b;
          std::vector<uint8_t> kv_a, kv_b;
          run(false, rows_a, kv_a);
          run(true, rows_b, kv_b);
          EXPECT_EQ(0, std::memcmp(rows_a.data(), rows_b.data(), rows_a.size() * sizeof(float))) << "rotated rows";
          EXPECT_TRUE(kv_a == kv_b) << "stored K/V bytes";
          EXPECT_NE(0, std::memcmp(rows_a.data(), src.data(), rows_a.size() * sizeof(float))) << "nothing rotated";
        }
      }
  }
}

// The device argmax against the host's first-maximum scan: vocabulary-sized rows with
// the maximum repeated (ties), rows of -inf, short and odd lengths, aligned and not.
TEST(CudaOps, ArgmaxIsTheFirstMaximum) {
  HI_REQUIRE_CUDA();
  std::mt19937 rng(14);
  for (const int64_t n : {int64_t{1}, int64_t{5}, int64_t{1025}, int64_t{32000}, int64_t{128256}, int64_t{152064}}) {
    for (int trial = 0; trial < 4; ++trial) {
      std::vector<float> v = randn(static_cast<size_t>(n), rng);
      if (trial >= 1 && n > 3) {  // the maximum at several places: the first must win
        std::uniform_int_distribution<int64_t> at(0, n - 1);
        for (int k = 0; k < 3; ++k) v[static_cast<size_t>(at(rng))] = 9.f;
      }
      if (trial == 3)
        for (auto& x : v) x = -INFINITY;
      DevBuf d = to_device(v);
      EXPECT_EQ(gpu().argmax(d.f(), n), argmax(v)) << "n " << n << " trial " << trial;
      if (n > 1) {  // a row starting off the 16-byte grid (the kernel's vector loads)
        const std::vector<float> tail(v.begin() + 1, v.end());
        EXPECT_EQ(gpu().argmax(d.f() + 1, n - 1), argmax(tail)) << "n " << n << " trial " << trial << ", unaligned";
      }
    }
  }
}

// The device's top-k against the CPU backend's (the host sort): the same ids in the same
// order, values bit for bit, with ties (values on a grid), -0 beside +0, -inf and NaN.
TEST(CudaOps, TopKMatchesTheHostSort) {
  HI_REQUIRE_CUDA();
  std::mt19937 rng(15);
  for (const int64_t n : {int64_t{1}, int64_t{7}, int64_t{1025}, int64_t{32000}, int64_t{128256}}) {
    for (int trial = 0; trial < 4; ++trial) {
      std::vector<float> v = randn(static_cast<size_t>(n), rng, 3.f);
      if (trial == 1)
        for (auto& x : v) x = std::round(x * 2.f) / 2.f;  // many ties at every rank
      if (trial == 2 && n > 6) {
        v[0] = -0.f, v[1] = 0.f, v[2] = -INFINITY, v[3] = NAN, v[4] = 1e30f, v[5] = -1e30f;
        for (int64_t i = 6; i < n; i += 5) v[static_cast<size_t>(i)] = 0.f;
      }
      if (trial == 3)
        for (auto& x : v) x = 1.5f;  // one value everywhere: the smallest indices win
      DevBuf d = to_device(v);
      for (const int k : {1, 40, 1000, kMaxTopK}) {
        const std::vector<LogitCandidate> got = gpu().top_k(d.f(), n, k);
        const std::vector<LogitCandidate> want = cpu().top_k(v.data(), n, k);
        ASSERT_EQ(got.size(), want.size()) << "n " << n << " trial " << trial << " k " << k;
        for (size_t i = 0; i < want.size(); ++i) {
          ASSERT_EQ(got[i].id, want[i].id) << "n " << n << " trial " << trial << " k " << k << " rank " << i;
          if (!std::isnan(want[i].logit)) ASSERT_EQ(got[i].logit, want[i].logit) << "rank " << i;
        }
      }
    }
  }
}

TEST(CudaOps, MergeAttention) {
  HI_REQUIRE_CUDA();
  std::mt19937 rng(10);
  const int n_q = 5, n_qh = 4, hd = 128;
  const int64_t sa = n_qh * hd + 16, sb = n_qh * hd;
  std::vector<float> oa = randn(n_q * sa, rng), ob = randn(n_q * sb, rng);
  std::vector<float> la = randn(n_q * n_qh, rng, 3.f), lb = randn(n_q * n_qh, rng, 3.f);
  la[1] = -kInf;                   // only b
  lb[2] = -kInf;                   // only a
  la[3] = lb[3] = -kInf;           // neither: a stays as it was
  la[4] = 80.f, lb[4] = -80.f;     // far apart
  std::vector<double> ro(oa.begin(), oa.end()), rl(n_q * n_qh);
  for (int t = 0; t < n_q; ++t)
    for (int h = 0; h < n_qh; ++h) {
      const int r = t * n_qh + h;
      const double a = la[r], b = lb[r];
      const double m = std::max(a, b);
      if (m == -INFINITY) {
        rl[r] = -INFINITY;
        continue;
      }
      const double wa = std::exp(a - m), wb = std::exp(b - m);
      for (int d = 0; d < hd; ++d)
        ro[t * sa + h * hd + d] =
            ((wa > 0 ? wa * oa[t * sa + h * hd + d] : 0.0) + (wb > 0 ? wb * ob[t * sb + h * hd + d] : 0.0)) /
            (wa + wb);
      rl[r] = m + std::log(wa + wb);
    }
  DevBuf doa = to_device(oa), dob = to_device(ob), dla = to_device(la), dlb = to_device(lb);
  gpu().merge_attention(doa.f(), dla.f(), dob.f(), dlb.f(), n_q, n_qh, hd, sa, sb);
  std::vector<float> got_o = to_host(doa, oa.size()), got_l = to_host(dla, la.size());
  EXPECT_TRUE(close(got_o, ro, 1e-6)) << "merged outputs (padding columns must be untouched)";
  EXPECT_TRUE(close(got_l, rl, 2e-5, /*abs_mode=*/true)) << "merged lse";
  cpu().merge_attention(oa.data(), la.data(), ob.data(), lb.data(), n_q, n_qh, hd, sa, sb);
  EXPECT_TRUE(close(got_o, widen(oa), 1e-6)) << "merged outputs vs CPU backend";
  EXPECT_TRUE(close(got_l, widen(la), 2e-5, true)) << "merged lse vs CPU backend";
}

}  // namespace
}  // namespace headinfer::test

#else

TEST(CudaOps, NotBuilt) { GTEST_SKIP() << "built without CUDA (configure with -DHEADINFER_CUDA=ON, preset cuda)"; }

#endif  // HEADINFER_HAVE_CUDA
