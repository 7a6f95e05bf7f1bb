// Few-row matmul benchmark: the GEMV kernel (launch_gemv, what CublasGemm::matmul runs
// for F16 / BF16 weights and n <= kGemvMaxRows) against the cuBLAS path (activation
// conversion + cublasGemmEx) on the Llama-3-8B decode projections, BF16 weights.
// Reports weight GB/s and its ratio to a device-to-device copy rate (bytes read +
// written) measured in the same run: a GEMV reads W once, so that ratio is the fraction
// of achievable HBM throughput. Each timed call uses the next of several weight copies
// (together >= 1 GiB), as a decode step streams 32 layers: L2 (tens of MB) cannot hold W.
// Also prints max|gemv - cublas| / max|cublas| as a sanity check (cuBLAS rounds the
// activations to BF16, so ~1e-3 is expected).
// Usage: cuda_gemv [--quick]

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "backend/cuda/cuda_internal.hpp"
#include "backend/cuda/kernels.hpp"
#include "bench_check.hpp"
#include "common/half.hpp"
#include "headinfer/error.hpp"

namespace {

using namespace headinfer;

// Device-to-device copy rate (bytes read + bytes written per second) of a 1 GiB buffer.
double copy_gbps(cudaStream_t s, bool quick) {
  const size_t bytes = size_t{1} << 30;
  void *a, *b;
  BENCH_CHECK(cudaMalloc(&a, bytes));
  BENCH_CHECK(cudaMalloc(&b, bytes));
  BENCH_CHECK(cudaMemset(a, 0x5a, bytes));
  for (int i = 0; i < 2; ++i) BENCH_CHECK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, s));
  cudaEvent_t e0, e1;
  BENCH_CHECK(cudaEventCreate(&e0));
  BENCH_CHECK(cudaEventCreate(&e1));
  const int iters = quick ? 5 : 20;
  BENCH_CHECK(cudaEventRecord(e0, s));
  for (int i = 0; i < iters; ++i) BENCH_CHECK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, s));
  BENCH_CHECK(cudaEventRecord(e1, s));
  BENCH_CHECK(cudaEventSynchronize(e1));
  float ms = 0;
  BENCH_CHECK(cudaEventElapsedTime(&ms, e0, e1));
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  cudaFree(a);
  cudaFree(b);
  return 2.0 * bytes * iters / (ms * 1e-3) / 1e9;
}

// Seconds per call of fn(i) (i: call index), after a few warm-up calls, by events.
template <typename Fn>
double time_per_call(cudaStream_t s, Fn fn, int iters) {
  for (int i = 0; i < 3; ++i) fn(i);
  cudaEvent_t e0, e1;
  BENCH_CHECK(cudaEventCreate(&e0));
  BENCH_CHECK(cudaEventCreate(&e1));
  BENCH_CHECK(cudaEventRecord(e0, s));
  for (int i = 0; i < iters; ++i) fn(i);
  BENCH_CHECK(cudaEventRecord(e1, s));
  BENCH_CHECK(cudaEventSynchronize(e1));
  float ms = 0;
  BENCH_CHECK(cudaEventElapsedTime(&ms, e0, e1));
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  return ms * 1e-3 / iters;
}

struct Proj {
  const char* name;
  int rows, cols;
};

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      quick = true;
    } else {
      std::fprintf(stderr, "usage: cuda_gemv [--quick]\n");
      return 2;
    }
  }
  setenv("HEADINFER_CUDA_GEMV", "1", 1);  // the kernel for every n measured (the backend's default: n <= 2)
  try {
    cudaStream_t s;
    BENCH_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    cudaDeviceProp prop{};
    BENCH_CHECK(cudaGetDeviceProperties(&prop, 0));
    const double copy = copy_gbps(s, quick);
    std::printf("device: %s; device-to-device copy %.0f GB/s (read + write)\n", prop.name, copy);
    std::printf("%-22s %2s %10s %9s %7s %10s %9s %7s %8s %9s\n", "projection (BF16)", "n", "gemv us", "GB/s", "/copy",
                "cublas us", "GB/s", "/copy", "speedup", "rel diff");

    // One host pool of BF16 values, uploaded in slices (values do not affect timing).
    std::mt19937 rng(1);
    std::normal_distribution<float> nd(0.f, 0.05f);
    std::vector<uint16_t> pool(size_t{1} << 22);
    for (auto& v : pool) v = f32_to_bf16(nd(rng));

    const Proj projs[] = {{"fused QKV 6144x4096", 6144, 4096},
                          {"O 4096x4096", 4096, 4096},
                          {"gate/up 28672x4096", 28672, 4096},
                          {"down 4096x14336", 4096, 14336}};
    cuda::CublasGemm gemm(s);
    for (const Proj& p : projs) {
      const size_t elems = static_cast<size_t>(p.rows) * p.cols, bytes = elems * 2;
      const int copies = static_cast<int>(std::max<size_t>(2, ((size_t{1} << 30) + bytes - 1) / bytes));
      std::vector<void*> ws(copies);
      for (auto& w : ws) {
        BENCH_CHECK(cudaMalloc(&w, bytes));
        for (size_t done = 0; done < elems;) {
          const size_t take = std::min(elems - done, pool.size());
          BENCH_CHECK(cudaMemcpy(static_cast<uint16_t*>(w) + done, pool.data(), take * 2, cudaMemcpyHostToDevice));
          done += take;
        }
      }
      const int max_n = cuda::kGemvMaxRows;
      std::vector<float> hx(static_cast<size_t>(max_n) * p.cols);
      std::normal_distribution<float> xd(0.f, 1.f);
      for (auto& v : hx) v = xd(rng);
      float *x, *out_g, *out_c;
      BENCH_CHECK(cudaMalloc(reinterpret_cast<void**>(&x), hx.size() * 4));
      BENCH_CHECK(cudaMemcpy(x, hx.data(), hx.size() * 4, cudaMemcpyHostToDevice));
      BENCH_CHECK(cudaMalloc(reinterpret_cast<void**>(&out_g), static_cast<size_t>(max_n) * p.rows * 4));
      BENCH_CHECK(cudaMalloc(reinterpret_cast<void**>(&out_c), static_cast<size_t>(max_n) * p.rows * 4));
      const int iters = quick ? 20 : 200;
      for (int n : {1, 2, 4, 8}) {
        if (n > max_n) continue;
        auto mat = [&](int i) { return Mat{DType::BF16, ws[i % copies], p.rows, p.cols}; };
        const double tg = time_per_call(
            s, [&](int i) { gemm.matmul(x, n, mat(i), nullptr, out_g); }, iters);
        const double tc = time_per_call(
            s, [&](int i) { gemm.matmul_cublas(x, n, mat(i), nullptr, out_c); }, iters);
        // Same weights for both outputs compared.
        gemm.matmul(x, n, mat(0), nullptr, out_g);
        gemm.matmul_cublas(x, n, mat(0), nullptr, out_c);
        BENCH_CHECK(cudaStreamSynchronize(s));
        std::vector<float> g(static_cast<size_t>(n) * p.rows), c(g.size());
        BENCH_CHECK(cudaMemcpy(g.data(), out_g, g.size() * 4, cudaMemcpyDeviceToHost));
        BENCH_CHECK(cudaMemcpy(c.data(), out_c, c.size() * 4, cudaMemcpyDeviceToHost));
        double max_err = 0, max_ref = 0;
        for (size_t i = 0; i < g.size(); ++i) {
          max_err = std::max(max_err, std::abs(double(g[i]) - c[i]));
          max_ref = std::max(max_ref, std::abs(double(c[i])));
        }
        const double gg = bytes / tg / 1e9, gc = bytes / tc / 1e9;
        std::printf("%-22s %2d %10.1f %9.0f %7.2f %10.1f %9.0f %7.2f %8.2f %9.1e\n", p.name, n, tg * 1e6, gg,
                    gg / copy, tc * 1e6, gc, gc / copy, tc / tg, max_err / std::max(max_ref, 1e-30));
        if (n <= 2) {
          // The kernel's speed knobs for decode: loads in flight and rows per warp. They
          // must give the default's bits exactly.
          std::printf("  tunings (unroll, rows/warp):");
          for (cuda::GemvTuning t : {cuda::GemvTuning{2, 2, false}, cuda::GemvTuning{4, 2, false},
                                     cuda::GemvTuning{2, 1, false}, cuda::GemvTuning{4, 1, false},
                                     cuda::GemvTuning{8, 1, false}}) {
            gemm.set_gemv_tuning(t);
            const double tt = time_per_call(
                s, [&](int i) { gemm.matmul(x, n, mat(i), nullptr, out_c); }, iters);
            gemm.matmul(x, n, mat(0), nullptr, out_c);
            BENCH_CHECK(cudaStreamSynchronize(s));
            std::vector<float> tv(g.size());
            BENCH_CHECK(cudaMemcpy(tv.data(), out_c, tv.size() * 4, cudaMemcpyDeviceToHost));
            const bool same = std::memcmp(tv.data(), g.data(), g.size() * 4) == 0;
            std::printf("  (%d,%d) %.1f us %.2f/copy%s", t.unroll, t.rows_per_warp, tt * 1e6, bytes / tt / 1e9 / copy,
                        same ? "" : " DIFFERENT BITS");
          }
          std::printf("\n");
          gemm.set_gemv_tuning(cuda::gemv_tuning_from_env());
        }
      }
      cudaFree(x);
      cudaFree(out_g);
      cudaFree(out_c);
      for (void* w : ws) cudaFree(w);
    }
    cudaStreamDestroy(s);
  } catch (const headinfer::Error& e) {
    std::fprintf(stderr, "cuda_gemv: %s\n", e.with_location().c_str());
    return 1;
  }
  return 0;
}
