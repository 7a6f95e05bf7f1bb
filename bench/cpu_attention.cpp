// Speed of the CPU attention (cpu_attention) on its own: causal prefill of 8K
// queries against 8K keys and decode of one token against 64K keys, head_dim 128,
// 1 and 4 query heads per KV head, F32 and BF16 KV.
//   cpu_attention [--threads N] [--isa avx2|avx512] [--quick] [--prefill N] [--decode N]
// --quick: 2K prefill, 16K decode. Prints one markdown table row per case.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/attention_cpu.hpp"
#include "backend/cpu/matmul.hpp"
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

struct Kv {
  std::vector<uint8_t> k, v;
};

Kv make_kv(DType dt, int64_t n, int hd, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  Kv kv;
  for (auto* side : {&kv.k, &kv.v}) {
    side->resize(dtype_bytes(dt, n * hd));
    if (dt == DType::F32) {
      auto* p = reinterpret_cast<float*>(side->data());
      for (int64_t i = 0; i < n * hd; ++i) p[i] = nd(rng);
    } else {
      auto* p = reinterpret_cast<uint16_t*>(side->data());
      for (int64_t i = 0; i < n * hd; ++i) p[i] = dt == DType::BF16 ? f32_to_bf16(nd(rng)) : f32_to_f16(nd(rng));
    }
  }
  return kv;
}

struct Result {
  double sec, util;
};

// n_q queries at positions keys - n_q .. keys - 1 against `keys` keys, causal.
Result run_case(ThreadPool& pool, DType dt, int n_q, int64_t keys, int n_qh, int hd, double min_s) {
  const Kv kv = make_kv(dt, keys, hd, 11);
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> q(static_cast<size_t>(n_q) * n_qh * hd), out(q.size()), lse(static_cast<size_t>(n_q) * n_qh);
  for (float& x : q) x = nd(rng);
  AttnArgs a;
  a.q = q.data();
  a.q_stride = int64_t{n_qh} * hd;
  a.n_q = n_q;
  a.n_qh = n_qh;
  a.head_dim = hd;
  a.q_pos0 = keys - n_q;
  a.causal = true;
  a.scale = 1.f / std::sqrt(static_cast<float>(hd));
  a.kv_dtype = dt;
  a.pieces.push_back(KvPiece{kv.k.data(), kv.v.data(), keys, 0});
  a.out = out.data();
  a.out_stride = a.q_stride;
  a.lse = lse.data();
  std::vector<double> t;
  const double w0 = now_s(), c0 = cpu_s();
  // At least 3 calls and min_s seconds; a slow call (the scalar code) counts once.
  while (t.size() < 3 || now_s() - w0 < min_s) {
    const double t0 = now_s();
    cpu_attention(pool, a);
    t.push_back(now_s() - t0);
    if (t.back() > 5.0) break;
  }
  const double util = (cpu_s() - c0) / ((now_s() - w0) * pool.size());
  std::sort(t.begin(), t.end());
  return {t[t.size() / 2], util};
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 0;
  int prefill = 8192;
  int64_t decode = 65536;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc) {
      threads = std::atoi(argv[++i]);
    } else if (a == "--isa" && i + 1 < argc) {
      const std::string isa = argv[++i];
      cpu_matmul_set_isa(isa == "avx2" ? CpuIsa::Avx2 : isa == "avx512" ? CpuIsa::Avx512 : CpuIsa::Auto);
    } else if (a == "--quick") {
      prefill = 2048;
      decode = 16384;
    } else if (a == "--prefill" && i + 1 < argc) {
      prefill = std::atoi(argv[++i]);
    } else if (a == "--decode" && i + 1 < argc) {
      decode = std::atoll(argv[++i]);
    } else {
      std::fprintf(stderr,
                   "usage: cpu_attention [--threads N] [--isa avx2|avx512] [--quick] [--prefill N] [--decode N]\n");
      return 2;
    }
  }
  ThreadPool pool(threads);
  const int hd = 128;
  std::printf("threads %d, isa %s, head_dim %d\n\n", pool.size(), cpu_isa_name(cpu_matmul_isa()), hd);
  std::printf("| case | KV | q heads / KV head | ms per call (median) | GFLOP/s | cores had |\n");
  std::printf("|---|---|---|---|---|---|\n");
  for (int n_qh : {1, 4})
    for (DType dt : {DType::F32, DType::BF16}) {
      if (prefill <= 0) break;
      const Result r = run_case(pool, dt, prefill, prefill, n_qh, hd, 2.0);
      // Causal: query t sees t + 1 keys; q.k and p.v are 2 * hd flops each.
      const double flops = 4.0 * hd * n_qh * (static_cast<double>(prefill) * (prefill + 1) / 2);
      std::printf("| prefill %d x %d | %s | %d | %.1f | %.1f | %.0f%% |\n", prefill, prefill, dtype_name(dt), n_qh,
                  r.sec * 1e3, flops / r.sec * 1e-9, r.util * 100);
      std::fflush(stdout);
    }
  for (int n_qh : {1, 4})
    for (DType dt : {DType::F32, DType::BF16}) {
      if (decode <= 0) break;
      const Result r = run_case(pool, dt, 1, decode, n_qh, hd, 1.0);
      const double flops = 4.0 * hd * n_qh * static_cast<double>(decode);
      const double gbs = static_cast<double>(dtype_bytes(dt, 2 * decode * hd)) / r.sec * 1e-9;
      std::printf("| decode 1 x %lld (KV read %.1f GB/s) | %s | %d | %.3f | %.1f | %.0f%% |\n",
                  static_cast<long long>(decode), gbs, dtype_name(dt), n_qh, r.sec * 1e3, flops / r.sec * 1e-9,
                  r.util * 100);
      std::fflush(stdout);
    }
  return 0;
}
