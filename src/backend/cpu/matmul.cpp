#include "backend/cpu/matmul.hpp"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "backend/cpu/kernels_matmul.hpp"
#include "common/half.hpp"
#include "backend/cpu/thread_scratch.hpp"
#include "headinfer/error.hpp"

namespace headinfer {

namespace {

using cpu_kern::MatmulJob;

bool cpu_has_avx512() {
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  }();
  return has;
}

std::atomic<CpuIsa> g_isa{CpuIsa::Auto};
std::atomic<int> g_gemv_max_tokens{4};

struct GemmScratchTag;
float* gemm_scratch(size_t floats) { return thread_scratch<GemmScratchTag>(floats, "matmul"); }

// Element i of a bias vector in any dtype; byte loads, since a bias may sit at any address.
float bias_at(const Mat& b, int64_t i) {
  const auto* bytes = static_cast<const uint8_t*>(b.data);
  uint16_t h;
  float f;
  switch (b.dtype) {
    case DType::F32: std::memcpy(&f, bytes + 4 * i, 4); return f;
    case DType::BF16: std::memcpy(&h, bytes + 2 * i, 2); return bf16_to_f32(h);
    case DType::F16: std::memcpy(&h, bytes + 2 * i, 2); return f16_to_f32(h);
    case DType::Q8_0: {
      const uint8_t* blk = static_cast<const uint8_t*>(b.data) + (i / kQ8_0Block) * kQ8_0BlockBytes;
      uint16_t hs;
      std::memcpy(&hs, blk, 2);
      return f16_to_f32(hs) * static_cast<float>(static_cast<int8_t>(blk[2 + i % kQ8_0Block]));
    }
  }
  return 0.f;
}

void add_bias(const Mat* bias, float* out, int64_t ldo, int64_t t0, int64_t t1, int64_t r0, int64_t r1) {
  if (!bias) return;
  for (int64_t r = r0; r < r1; ++r) {
    float b = bias_at(*bias, r);
    for (int64_t t = t0; t < t1; ++t) out[t * ldo + r] += b;
  }
}

// Below this many multiply-adds a call runs on the caller alone: waking the pool
// costs a few microseconds, as much as the work.
constexpr int64_t kSerialMacs = 1 << 16;
// Weight block of a GEMM task: about 384 KiB of f32 so that it stays in L2
// (1 MiB/core on Zen 4, >= 256 KiB nearly everywhere) while tokens stream past it.
constexpr int64_t kGemmBlockFloats = 96 * 1024;
constexpr int64_t kGemmTokenBlock = 128;

}  // namespace

void cpu_matmul_set_isa(CpuIsa isa) {
  if (isa == CpuIsa::Avx512 && !cpu_has_avx512())
    HI_FAIL("matmul: AVX-512 (F, BW, VL, DQ) requested but this CPU lacks it");
  g_isa.store(isa);
}

CpuIsa cpu_matmul_isa() {
  CpuIsa isa = g_isa.load(std::memory_order_relaxed);
  if (isa != CpuIsa::Auto) return isa;
  return cpu_has_avx512() ? CpuIsa::Avx512 : CpuIsa::Avx2;
}

const char* cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::Auto: return "auto";
    case CpuIsa::Avx2: return "avx2";
    case CpuIsa::Avx512: return "avx512";
  }
  return "?";
}

int cpu_matmul_gemv_max_tokens() { return g_gemv_max_tokens.load(std::memory_order_relaxed); }
void cpu_matmul_set_gemv_max_tokens(int n) { g_gemv_max_tokens.store(n < 1 ? 1 : n); }

void cpu_matmul(ThreadPool& pool, const float* x, int n, const Mat& w, const Mat* bias, float* out, int64_t x_stride) {
  HI_CHECK(!w.empty(), "matmul: weight matrix has no data");
  HI_CHECK(w.rows > 0 && w.cols > 0, "matmul: weight shape [" << w.rows << ", " << w.cols << "] is empty");
  HI_CHECK(n >= 0, "matmul: negative token count " << n);
  if (w.dtype == DType::Q8_0)
    HI_CHECK(w.cols % kQ8_0Block == 0,
             "matmul: Q8_0 weight has " << w.cols << " columns, not a multiple of " << kQ8_0Block);
  if (bias && bias->empty()) bias = nullptr;
  if (bias) {
    HI_CHECK(bias->rows * bias->cols == w.rows,
             "matmul: bias has " << bias->rows * bias->cols << " values for " << w.rows << " output rows");
    if (bias->dtype == DType::Q8_0)
      HI_CHECK(bias->cols % kQ8_0Block == 0, "matmul: Q8_0 bias is not a whole number of blocks");
  }
  if (x_stride == 0) x_stride = w.cols;
  HI_CHECK(x_stride >= w.cols, "matmul: input rows " << x_stride << " floats apart hold fewer than the " << w.cols
                                                     << " columns of the weight");
  if (n == 0) return;
  HI_CHECK(x && out, "matmul: null activation or output pointer");

  MatmulJob j;
  j.x = x;
  j.ldx = x_stride;
  j.n = n;
  j.dt = w.dtype;
  j.w = static_cast<const uint8_t*>(w.data);
  j.wstride = dtype_bytes(w.dtype, w.cols);
  j.K = w.cols;
  j.out = out;
  j.ldo = w.rows;

  const bool avx512 = cpu_matmul_isa() == CpuIsa::Avx512;
  const int64_t N = w.rows;
  const bool serial = static_cast<int64_t>(n) * N * w.cols < kSerialMacs || pool.size() == 1;

  if (n <= cpu_matmul_gemv_max_tokens()) {
    auto rows = [&](int64_t r0, int64_t r1) {
      if (avx512)
        cpu_kern::gemv_avx512(j, r0, r1);
      else
        cpu_kern::gemv_avx2(j, r0, r1);
      add_bias(bias, out, j.ldo, 0, n, r0, r1);
    };
    if (serial) {
      rows(0, N);
      return;
    }
    // Several pieces per thread, in whole register tiles (8 rows), so that a thread
    // slowed by another process on its core does not hold up the others.
    int64_t grain = (N + pool.size() * 4 - 1) / (pool.size() * 4);
    grain = (grain + 7) / 8 * 8;
    pool.parallel_for(N, grain, rows);
    return;
  }

  const int64_t ldd = cpu_kern::gemm_scratch_stride(w.cols);
  int64_t rb = kGemmBlockFloats / ldd / 6 * 6;  // whole tiles on both ISAs (6 and 3 rows)
  if (rb < 6) rb = 6;
  if (rb > N) rb = N;
  const int64_t n_rb = (N + rb - 1) / rb;
  const int64_t tb = kGemmTokenBlock;
  const int64_t n_tb = (n + tb - 1) / tb;
  auto tasks = [&](int64_t b, int64_t e) {
    float* scratch = w.dtype == DType::F32 ? nullptr : gemm_scratch(static_cast<size_t>(rb * ldd));
    for (int64_t task = b; task < e; ++task) {
      int64_t r0 = task % n_rb * rb, r1 = r0 + rb < N ? r0 + rb : N;
      int64_t t0 = task / n_rb * tb, t1 = t0 + tb < n ? t0 + tb : n;
      if (avx512)
        cpu_kern::gemm_avx512(j, t0, t1, r0, r1, scratch);
      else
        cpu_kern::gemm_avx2(j, t0, t1, r0, r1, scratch);
      add_bias(bias, out, j.ldo, t0, t1, r0, r1);
    }
  };
  if (serial)
    tasks(0, n_rb * n_tb);
  else
    pool.parallel_for(n_rb * n_tb, 1, tasks);
}

}  // namespace headinfer
