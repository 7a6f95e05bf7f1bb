// Prefill GEMMs under sustained load: each Llama-3-8B projection as the engine's
// all-resident prefill runs it (QKV and O over a 64K-token chunk, gate/up and down in
// its 2048-row MLP passes), timed after seconds of the same call, so at the clock a
// whole prefill runs at (the H200 is power-bound there) rather than the short-run one.
// Variants: the engine's path (f32 rows converted to BF16, then cublasGemmEx with f32
// out), the GEMM alone with f32 out and with BF16 out, and each of cuBLASLt's
// heuristic algorithms for both outputs. What a variant saves in bytes or energy shows
// as TFLOP/s here; each line also prints its wall-clock span (ms since the epoch) so a
// power/clock log taken beside it can be joined to it.
// Usage: cuda_gemm [--seconds S] [--algos K] [--only NAME]

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "backend/cuda/cuda_internal.hpp"
#include "bench_check.hpp"
#include "common/half.hpp"
#include "headinfer/error.hpp"

namespace {

using namespace headinfer;

long long now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Runs fn back to back for warm_s, then times it for run_s by events; seconds per call.
double sustained(cudaStream_t s, const std::function<void()>& fn, double warm_s, double run_s) {
  cudaEvent_t e0, e1;
  BENCH_CHECK(cudaEventCreate(&e0));
  BENCH_CHECK(cudaEventCreate(&e1));
  auto timed = [&](int iters) {
    BENCH_CHECK(cudaEventRecord(e0, s));
    for (int i = 0; i < iters; ++i) fn();
    BENCH_CHECK(cudaEventRecord(e1, s));
    BENCH_CHECK(cudaEventSynchronize(e1));
    float ms = 0;
    BENCH_CHECK(cudaEventElapsedTime(&ms, e0, e1));
    return ms * 1e-3;
  };
  double per = timed(2) / 2;  // first estimate, includes any setup
  double warmed = 0;
  while (warmed < warm_s) {
    const int iters = std::max(1, static_cast<int>(0.25 / per));
    const double t = timed(iters);
    per = t / iters;
    warmed += t;
  }
  const int iters = std::max(3, static_cast<int>(run_s / per));
  per = timed(iters) / iters;
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  return per;
}

struct Shape {
  const char* name;
  int rows, cols, n;  // out features, in features, input rows per call
};

// Random values, not zeros: a tensor core's power depends on the bits it multiplies.
template <typename T>
void fill_random(T* p, size_t elems, float sd, std::mt19937& rng) {
  std::normal_distribution<float> d(0.f, sd);
  std::vector<T> pool(size_t{1} << 22);
  for (auto& v : pool) {
    if constexpr (sizeof(T) == 2)
      v = f32_to_bf16(d(rng));
    else
      v = d(rng);
  }
  for (size_t done = 0; done < elems;) {
    const size_t take = std::min(elems - done, pool.size());
    BENCH_CHECK(cudaMemcpy(p + done, pool.data(), take * sizeof(T), cudaMemcpyHostToDevice));
    done += take;
  }
}

class LtGemm {
 public:
  LtGemm(const Shape& sh, cudaDataType_t out_type) {
    BENCH_CHECK(cublasLtCreate(&lt_));
    BENCH_CHECK(cublasLtMatmulDescCreate(&desc_, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t t = CUBLAS_OP_T, nn = CUBLAS_OP_N;
    BENCH_CHECK(cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_TRANSA, &t, sizeof(t)));
    BENCH_CHECK(cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_TRANSB, &nn, sizeof(nn)));
    // Column-major: W is cols x rows (ld cols), taken transposed; x^T is cols x n; out^T rows x n.
    BENCH_CHECK(cublasLtMatrixLayoutCreate(&a_, CUDA_R_16BF, sh.cols, sh.rows, sh.cols));
    BENCH_CHECK(cublasLtMatrixLayoutCreate(&b_, CUDA_R_16BF, sh.cols, sh.n, sh.cols));
    BENCH_CHECK(cublasLtMatrixLayoutCreate(&c_, out_type, sh.rows, sh.n, sh.rows));
    BENCH_CHECK(cublasLtMatmulPreferenceCreate(&pref_));
    BENCH_CHECK(cublasLtMatmulPreferenceSetAttribute(pref_, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &kWorkspace,
                                                     sizeof(kWorkspace)));
    BENCH_CHECK(cudaMalloc(&workspace_, kWorkspace));
  }
  ~LtGemm() {
    cudaFree(workspace_);
    cublasLtMatmulPreferenceDestroy(pref_);
    cublasLtMatrixLayoutDestroy(a_);
    cublasLtMatrixLayoutDestroy(b_);
    cublasLtMatrixLayoutDestroy(c_);
    cublasLtMatmulDescDestroy(desc_);
    cublasLtDestroy(lt_);
  }
  std::vector<cublasLtMatmulHeuristicResult_t> algos(int k) {
    std::vector<cublasLtMatmulHeuristicResult_t> r(k);
    int got = 0;
    BENCH_CHECK(cublasLtMatmulAlgoGetHeuristic(lt_, desc_, a_, b_, c_, c_, pref_, k, r.data(), &got));
    r.resize(got);
    return r;
  }
  void run(const cublasLtMatmulAlgo_t& algo, const void* w, const void* x, void* out, cudaStream_t s) {
    const float alpha = 1.f, beta = 0.f;
    BENCH_CHECK(
        cublasLtMatmul(lt_, desc_, &alpha, w, a_, x, b_, &beta, out, c_, out, c_, &algo, workspace_, kWorkspace, s));
  }

 private:
  static constexpr size_t kWorkspace = size_t{32} << 20;
  cublasLtHandle_t lt_ = nullptr;
  cublasLtMatmulDesc_t desc_ = nullptr;
  cublasLtMatrixLayout_t a_ = nullptr, b_ = nullptr, c_ = nullptr;
  cublasLtMatmulPreference_t pref_ = nullptr;
  void* workspace_ = nullptr;
};

std::string algo_label(const cublasLtMatmulAlgo_t& algo) {
  int id = 0, tile = 0, stages = 0, splitk = 0, swizzle = 0, cluster = 0;
  size_t got = 0;
  cublasLtMatmulAlgoConfigGetAttribute(&algo, CUBLASLT_ALGO_CONFIG_ID, &id, sizeof(id), &got);
  cublasLtMatmulAlgoConfigGetAttribute(&algo, CUBLASLT_ALGO_CONFIG_TILE_ID, &tile, sizeof(tile), &got);
  cublasLtMatmulAlgoConfigGetAttribute(&algo, CUBLASLT_ALGO_CONFIG_STAGES_ID, &stages, sizeof(stages), &got);
  cublasLtMatmulAlgoConfigGetAttribute(&algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &splitk, sizeof(splitk), &got);
  cublasLtMatmulAlgoConfigGetAttribute(&algo, CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING, &swizzle, sizeof(swizzle), &got);
  cublasLtMatmulAlgoConfigGetAttribute(&algo, CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID, &cluster, sizeof(cluster), &got);
  char buf[96];
  std::snprintf(buf, sizeof(buf), "id %d tile %d stages %d splitk %d swizzle %d cluster %d", id, tile, stages, splitk,
                swizzle, cluster);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  double run_s = 1.5, warm_s = 1.0;
  int max_algos = 6;
  std::string only;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
      run_s = std::atof(argv[++i]);
    } else if (std::strcmp(argv[i], "--algos") == 0 && i + 1 < argc) {
      max_algos = std::atoi(argv[++i]);
    } else if (std::strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
      only = argv[++i];
    } else {
      std::fprintf(stderr, "usage: cuda_gemm [--seconds S] [--algos K] [--only qkv|o|gate_up|down|square]\n");
      return 2;
    }
  }
  try {
    cudaStream_t s;
    BENCH_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    cudaDeviceProp prop{};
    BENCH_CHECK(cudaGetDeviceProperties(&prop, 0));
    std::printf("device: %s; every line: %.1f s of the call before %.1f s timed\n", prop.name, warm_s, run_s);
    std::printf("%-8s %-44s %9s %8s %15s %15s\n", "shape", "variant", "ms/call", "TFLOP/s", "start ms", "end ms");
    std::mt19937 rng(3);
    const Shape shapes[] = {{"square", 8192, 8192, 8192},
                            {"qkv", 6144, 4096, 65536},
                            {"o", 4096, 4096, 65536},
                            {"gate_up", 28672, 4096, 2048},
                            {"down", 4096, 14336, 2048}};
    cuda::CublasGemm engine(s);
    for (const Shape& sh : shapes) {
      if (!only.empty() && only != sh.name) continue;
      const size_t w_elems = size_t(sh.rows) * sh.cols, x_elems = size_t(sh.n) * sh.cols,
                   o_elems = size_t(sh.n) * sh.rows;
      void *w, *xb, *out;
      float* xf;
      BENCH_CHECK(cudaMalloc(&w, w_elems * 2));
      BENCH_CHECK(cudaMalloc(&xb, x_elems * 2));
      BENCH_CHECK(cudaMalloc(reinterpret_cast<void**>(&xf), x_elems * 4));
      BENCH_CHECK(cudaMalloc(&out, o_elems * 4));
      fill_random(static_cast<uint16_t*>(w), w_elems, 0.05f, rng);
      fill_random(static_cast<uint16_t*>(xb), x_elems, 1.f, rng);
      fill_random(xf, x_elems, 1.f, rng);
      const double flops = 2.0 * sh.rows * double(sh.cols) * sh.n;
      auto report = [&](const std::string& label, const std::function<void()>& fn) {
        const long long t0 = now_ms();
        const double per = sustained(s, fn, warm_s, run_s);
        std::printf("%-8s %-44s %9.3f %8.1f %15lld %15lld\n", sh.name, label.c_str(), per * 1e3, flops / per / 1e12, t0,
                    now_ms());
        std::fflush(stdout);
      };
      const Mat mat{DType::BF16, w, sh.rows, sh.cols};
      engine.set_forward_rows(sh.n);
      report("engine: f32 in, convert, GemmEx, f32 out", [&] { engine.matmul(xf, sh.n, mat, nullptr, (float*)out); });
      const float alpha = 1.f, beta = 0.f;
      cublasHandle_t h;
      BENCH_CHECK(cublasCreate(&h));
      BENCH_CHECK(cublasSetStream(h, s));
      for (cudaDataType_t ot : {CUDA_R_32F, CUDA_R_16BF}) {
        const char* on = ot == CUDA_R_32F ? "f32" : "bf16";
        report(std::string("GemmEx, BF16 in, ") + on + " out", [&] {
          BENCH_CHECK(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, sh.rows, sh.n, sh.cols, &alpha, w, CUDA_R_16BF, sh.cols,
                                   xb, CUDA_R_16BF, sh.cols, &beta, out, ot, sh.rows, CUBLAS_COMPUTE_32F,
                                   CUBLAS_GEMM_DEFAULT));
        });
        LtGemm lt(sh, ot);
        const auto algos = lt.algos(max_algos);
        for (size_t a = 0; a < algos.size(); ++a) {
          report(std::string("Lt #") + std::to_string(a) + " " + on + ": " + algo_label(algos[a].algo),
                 [&] { lt.run(algos[a].algo, w, xb, out, s); });
        }
      }
      cublasDestroy(h);
      cudaFree(w);
      cudaFree(xb);
      cudaFree(xf);
      cudaFree(out);
    }
    cudaStreamDestroy(s);
  } catch (const headinfer::Error& e) {
    std::fprintf(stderr, "cuda_gemm: %s\n", e.with_location().c_str());
    return 1;
  }
  return 0;
}
