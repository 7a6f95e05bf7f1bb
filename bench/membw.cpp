// Memory read bandwidth of this machine, and how close the CPU matmul kernels get
// to it (GEMV, decode) or to the FMA peak (GEMM, prefill).
//   membw [--threads N] [--isa avx2|avx512] [--quick]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/matmul.hpp"
#include "backend/cpu/membw.hpp"
#include "common/half.hpp"
#include "common/thread_pool.hpp"

using namespace headinfer;

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// CPU time of the whole process: on a shared host, cpu / (wall * threads) says
// how much of the machine a measurement actually got.
double cpu_s() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + ts.tv_nsec * 1e-9;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Matrix {
  DType dt;
  int64_t rows, cols;
  std::vector<uint8_t> bytes;
  Mat mat() const { return Mat{dt, bytes.data(), rows, cols}; }
};

Matrix make_matrix(DType dt, int64_t rows, int64_t cols, uint32_t seed) {
  Matrix m{dt, rows, cols, std::vector<uint8_t>(dtype_bytes(dt, rows * cols))};
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  // A short random pattern repeated: filling 500 MB with fresh randoms takes long.
  std::vector<float> pat(4096);
  for (auto& f : pat) f = dist(rng);
  int64_t n = rows * cols;
  if (dt == DType::F32) {
    auto* p = reinterpret_cast<float*>(m.bytes.data());
    for (int64_t i = 0; i < n; ++i) p[i] = pat[static_cast<size_t>(i % 4093)];
  } else if (dt == DType::BF16 || dt == DType::F16) {
    auto* p = reinterpret_cast<uint16_t*>(m.bytes.data());
    for (int64_t i = 0; i < n; ++i) {
      float f = pat[static_cast<size_t>(i % 4093)];
      p[i] = dt == DType::BF16 ? f32_to_bf16(f) : f32_to_f16(f);
    }
  } else {
    for (int64_t b = 0; b < n / kQ8_0Block; ++b) {
      uint8_t* blk = m.bytes.data() + b * kQ8_0BlockBytes;
      uint16_t hs = f32_to_f16(1.f / 127.f);
      std::memcpy(blk, &hs, 2);
      for (int i = 0; i < kQ8_0Block; ++i) blk[2 + i] = static_cast<uint8_t>(rng() % 255);
    }
  }
  return m;
}

// Calls n tokens against several copies of a matrix in turn, so the weights come
// from DRAM as they do when a model's layers stream past (one copy of a 32 MB
// matrix would sit in a 32 MB L3). sec: median seconds per call; util: share of
// the pool's cores the process had meanwhile (spinning included).
struct Timing {
  double sec, util;
};

Timing time_matmul(ThreadPool& pool, const std::vector<Matrix>& copies, int n, int reps) {
  const Matrix& m0 = copies[0];
  std::vector<float> x(static_cast<size_t>(n * m0.cols), 0.5f), out(static_cast<size_t>(n * m0.rows));
  for (auto& c : copies) cpu_matmul(pool, x.data(), n, c.mat(), nullptr, out.data());  // warm up
  std::vector<double> t;
  double w0 = now_s(), c0 = cpu_s();
  for (int r = 0; r < reps; ++r) {
    const Matrix& m = copies[static_cast<size_t>(r) % copies.size()];
    double t0 = now_s();
    cpu_matmul(pool, x.data(), n, m.mat(), nullptr, out.data());
    t.push_back(now_s() - t0);
  }
  double util = (cpu_s() - c0) / ((now_s() - w0) * pool.size());
  return {median(t), util};
}

std::vector<Matrix> make_copies(DType dt, int64_t rows, int64_t cols, size_t min_total_bytes) {
  std::vector<Matrix> v;
  size_t total = 0;
  do {
    v.push_back(make_matrix(dt, rows, cols, static_cast<uint32_t>(v.size() + 1)));
    total += v.back().bytes.size();
  } while (total < min_total_bytes);
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 0;
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc) {
      threads = std::atoi(argv[++i]);
    } else if (a == "--isa" && i + 1 < argc) {
      std::string isa = argv[++i];
      cpu_matmul_set_isa(isa == "avx2" ? CpuIsa::Avx2 : isa == "avx512" ? CpuIsa::Avx512 : CpuIsa::Auto);
    } else if (a == "--quick") {
      quick = true;
    } else {
      std::fprintf(stderr, "usage: membw [--threads N] [--isa avx2|avx512] [--quick]\n");
      return 2;
    }
  }
  ThreadPool pool(threads);
  std::printf("threads %d, isa %s\n", pool.size(), cpu_isa_name(cpu_matmul_isa()));

  // Cost of an (almost) empty parallel_for: what each of ~200 matmuls per token pays.
  {
    std::vector<double> t;
    for (int r = 0; r < 7; ++r) {
      double t0 = now_s();
      for (int i = 0; i < 10000; ++i) pool.parallel_for(pool.size(), [](int64_t, int64_t) {});
      t.push_back((now_s() - t0) / 10000);
    }
    std::printf("pool: empty parallel_for %.2f us (median of 7 x 10000)\n", median(t) * 1e6);
  }

  double bw1;
  {
    ThreadPool one(1);
    bw1 = measure_read_bandwidth_gbs(one);
  }
  ReadBandwidthProbe probe(pool);
  double bw = probe.best_gbs(10);
  std::printf("read bandwidth: %.1f GB/s (%d threads), %.1f GB/s (1 thread)\n", bw, pool.size(), bw1);

  struct Shape {
    const char* name;
    int64_t rows, cols;
  };
  // Rounds alternate a bandwidth reading and a batch of GEMVs, since the host's
  // bandwidth drifts; the ratio is taken per round, then the median reported.
  const int rounds = quick ? 5 : 9;
  const Shape gemv_shapes[] = {{"2048x8192 (down)", 2048, 8192},
                               {"8192x2048 (up/gate)", 8192, 2048},
                               {"128256x2048 (lm_head)", 128256, 2048}};
  const size_t min_total = size_t{256} << 20;
  for (DType dt : {DType::BF16, DType::F16, DType::Q8_0, DType::F32}) {
    if (quick && dt != DType::BF16) continue;
    for (const Shape& s : gemv_shapes) {
      bool big = s.rows * s.cols > (int64_t{64} << 20);
      if (big && dt != DType::BF16) continue;  // the lm_head is measured in BF16 only
      auto copies = make_copies(dt, s.rows, s.cols, big ? 0 : min_total);
      for (int n : {1, 4}) {
        if (n != 1 && (big || quick)) continue;
        std::vector<double> bws, gbss, ratios;
        for (int r = 0; r < rounds; ++r) {
          double b = probe.best_gbs(2);
          double gbs = static_cast<double>(copies[0].bytes.size()) / time_matmul(pool, copies, n, big ? 3 : 15).sec * 1e-9;
          bws.push_back(b);
          gbss.push_back(gbs);
          ratios.push_back(gbs / b);
        }
        std::printf("GEMV %-5s %-22s n=%d: %6.1f GB/s (read bw %5.1f)  = %.2f of read bw, median of %d rounds"
                    " (range %.2f..%.2f)\n",
                    dtype_name(dt), s.name, n, median(gbss), median(bws), median(ratios), rounds,
                    *std::min_element(ratios.begin(), ratios.end()), *std::max_element(ratios.begin(), ratios.end()));
      }
    }
  }

  const Shape gemm_shapes[] = {{"2048x2048", 2048, 2048}, {"8192x2048", 8192, 2048}, {"2048x8192", 2048, 8192}};
  for (DType dt : {DType::BF16, DType::F32, DType::Q8_0}) {
    if (quick && dt != DType::BF16) continue;
    for (const Shape& s : gemm_shapes) {
      auto copies = make_copies(dt, s.rows, s.cols, 0);
      for (int n : {16, 128, 512}) {
        if (quick && n != 128) continue;
        Timing tm = time_matmul(pool, copies, n, 5);
        double gflops = 2.0 * n * s.rows * s.cols / tm.sec * 1e-9;
        std::printf("GEMM %-5s %-10s n=%-4d: %8.3f ms  %6.1f GFLOP/s  (had %.0f%% of the cores: %.1f GFLOP/s per"
                    " busy core)\n",
                    dtype_name(dt), s.name, n, tm.sec * 1e3, gflops, tm.util * 100, gflops / (tm.util * pool.size()));
      }
    }
  }
  return 0;
}
