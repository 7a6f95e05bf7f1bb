// CUDA attention benchmark: prefill TFLOP/s (cuDNN's fused attention where present,
// and the own tensor-core flash attention) against a cuBLAS BF16 GEMM ceiling measured
// in the same run, and split-KV decode GB/s.
// Llama-3-8B-like heads: head_dim 128, 32 query heads over 8 KV heads, BF16 KV.
// Usage: cuda_attention [--quick] [--decode | --cudnn | --own WARPS] [--case N] [--sustained S]
//   --quick: fewer repetitions; --decode: decode cases only; --cudnn: the default
//   path's prefill cases only; --own WARPS: one own block shape's prefill cases only;
//   --case N: the Nth prefill shape only (1 causal 16K, 2 causal 32K, 3 8K after 128K,
//   4 8K x one 8K block); --sustained S: S seconds of each case's calls before its
//   timed rounds. Times are the best of three rounds of back-to-back calls.

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "backend/cuda/cuda_backend.hpp"
#include "backend/cuda/cudnn_attention.hpp"
#include "backend/cuda/kernels.hpp"
#include "bench_check.hpp"
#include "common/half.hpp"
#include "headinfer/error.hpp"

namespace {

using namespace headinfer;

constexpr int kHeadDim = 128, kQHeads = 32, kKvHeads = 8, kGroup = kQHeads / kKvHeads;

// Seconds per call of fn as the engine issues calls: back to back, the device never
// waiting on the host between them (a synchronize after each call would add the host's
// launch work to every call's time). After a warm-up call, three rounds of calls, each
// about min_s / 3 long, timed on the device between two timestamps on the calls' stream;
// the best round's average, as bench/peers/torch_sdpa.py times PyTorch's calls.
// --sustained S: S seconds of the same calls first, so the rounds run at the clock a
// whole prefill runs at (power-bound on the H200) rather than the short-run one.
double g_sustained_s = 0;
template <typename Clock>
double time_per_call(Clock& clock, const std::function<void()>& fn, double min_s, int min_iters) {
  fn();
  clock.start();
  fn();
  const double one = std::max(clock.stop(), 1e-7);
  if (g_sustained_s > 0) {
    clock.start();
    for (int i = static_cast<int>(std::ceil(g_sustained_s / one)); i > 0; --i) fn();
    clock.stop();
  }
  const int n = std::max(min_iters, static_cast<int>(std::ceil(min_s / 3 / one)));
  double best = 1e30;
  for (int round = 0; round < 3; ++round) {
    clock.start();
    for (int i = 0; i < n; ++i) fn();
    best = std::min(best, clock.stop() / n);
  }
  return best;
}

// Timestamps on the backend's compute stream.
struct BackendClock {
  explicit BackendClock(Backend& b) : be(b), from(b.create_timing_event()), to(b.create_timing_event()) {
    HI_CHECK(from && to, "cuda_attention: the backend has no timing events");
  }
  ~BackendClock() {
    be.destroy_event(from);
    be.destroy_event(to);
  }
  void start() { be.record(from, Stream::Compute); }
  double stop() {
    be.record(to, Stream::Compute);
    return be.elapsed_seconds(from, to);
  }
  Backend& be;
  Event from, to;
};

// Timestamps on a stream of our own (cuDNN called directly).
struct StreamClock {
  explicit StreamClock(cudaStream_t s) : stream(s) {
    BENCH_CHECK(cudaEventCreate(&from));
    BENCH_CHECK(cudaEventCreate(&to));
  }
  ~StreamClock() {
    cudaEventDestroy(from);
    cudaEventDestroy(to);
  }
  void start() { BENCH_CHECK(cudaEventRecord(from, stream)); }
  double stop() {
    BENCH_CHECK(cudaEventRecord(to, stream));
    BENCH_CHECK(cudaEventSynchronize(to));
    float ms = 0;
    BENCH_CHECK(cudaEventElapsedTime(&ms, from, to));
    return ms * 1e-3;
  }
  cudaStream_t stream;
  cudaEvent_t from = nullptr, to = nullptr;
};

double time_per_call(Backend& be, const std::function<void()>& fn, double min_s, int min_iters) {
  BackendClock clock(be);
  return time_per_call(clock, fn, min_s, min_iters);
}

// Random BF16 values uploaded into a fresh backend buffer (slices of one host pool,
// so filling gigabytes of KV does not take minutes of host RNG).
void* random_bf16(Backend& be, size_t n, std::mt19937& rng) {
  static std::vector<uint16_t> pool;
  if (pool.empty()) {
    std::normal_distribution<float> d(0.f, 1.f);
    pool.resize(size_t{1} << 24);
    for (auto& x : pool) x = f32_to_bf16(d(rng));
  }
  auto* p = static_cast<uint8_t*>(be.alloc(n * 2));
  for (size_t done = 0; done < n;) {
    const size_t off = rng() % (pool.size() / 2);
    const size_t take = std::min(n - done, pool.size() - off);
    be.upload(p + done * 2, pool.data() + off, take * 2);
    done += take;
  }
  return p;
}

float* random_f32(Backend& be, size_t n, std::mt19937& rng) {
  std::normal_distribution<float> d(0.f, 1.f);
  std::vector<float> h(n);
  for (auto& x : h) x = d(rng);
  auto* p = static_cast<float*>(be.alloc(n * 4));
  be.upload(p, h.data(), n * 4);
  return p;
}

double gemm_ceiling_tflops(bool quick) {
  const int n = 8192;
  const size_t elems = static_cast<size_t>(n) * n;
  std::mt19937 rng(7);
  std::normal_distribution<float> d(0.f, 1.f);
  std::vector<uint16_t> h(elems);
  for (auto& x : h) x = f32_to_bf16(d(rng));
  void *a, *b, *c;
  BENCH_CHECK(cudaMalloc(&a, elems * 2));
  BENCH_CHECK(cudaMalloc(&b, elems * 2));
  BENCH_CHECK(cudaMalloc(&c, elems * 2));
  BENCH_CHECK(cudaMemcpy(a, h.data(), elems * 2, cudaMemcpyHostToDevice));
  BENCH_CHECK(cudaMemcpy(b, h.data(), elems * 2, cudaMemcpyHostToDevice));
  cublasHandle_t handle;
  BENCH_CHECK(cublasCreate(&handle));
  const float alpha = 1.f, beta = 0.f;
  auto run = [&] {
    BENCH_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, n, n, n, &alpha, a, CUDA_R_16BF, n, b, CUDA_R_16BF, n,
                             &beta, c, CUDA_R_16BF, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  };
  for (int i = 0; i < 3; ++i) run();
  cudaEvent_t e0, e1;
  BENCH_CHECK(cudaEventCreate(&e0));
  BENCH_CHECK(cudaEventCreate(&e1));
  const int iters = quick ? 5 : 20;
  BENCH_CHECK(cudaEventRecord(e0));
  for (int i = 0; i < iters; ++i) run();
  BENCH_CHECK(cudaEventRecord(e1));
  BENCH_CHECK(cudaEventSynchronize(e1));
  float ms = 0;
  BENCH_CHECK(cudaEventElapsedTime(&ms, e0, e1));
  cublasDestroy(handle);
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  cudaFree(a);
  cudaFree(b);
  cudaFree(c);
  return 2.0 * n * n * static_cast<double>(n) * iters / (ms * 1e-3) / 1e12;
}

// Device-to-device copy rate (bytes read + bytes written per second) of a 1 GiB buffer.
double copy_gbps(bool quick) {
  const size_t bytes = size_t{1} << 30;
  void *a, *b;
  BENCH_CHECK(cudaMalloc(&a, bytes));
  BENCH_CHECK(cudaMalloc(&b, bytes));
  BENCH_CHECK(cudaMemset(a, 0x5a, bytes));
  for (int i = 0; i < 2; ++i) BENCH_CHECK(cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice));
  cudaEvent_t e0, e1;
  BENCH_CHECK(cudaEventCreate(&e0));
  BENCH_CHECK(cudaEventCreate(&e1));
  const int iters = quick ? 5 : 20;
  BENCH_CHECK(cudaEventRecord(e0));
  for (int i = 0; i < iters; ++i) BENCH_CHECK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice));
  BENCH_CHECK(cudaEventRecord(e1));
  BENCH_CHECK(cudaEventSynchronize(e1));
  float ms = 0;
  BENCH_CHECK(cudaEventElapsedTime(&ms, e0, e1));
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  cudaFree(a);
  cudaFree(b);
  return 2.0 * bytes * iters / (ms * 1e-3) / 1e9;
}

struct KvHead {
  std::vector<KvPiece> pieces;
};

// Attention of all 32 query heads (8 calls, one per KV head) for n_q tokens at
// q_pos0 against the given per-KV-head pieces.
struct AttnRun {
  Backend* be;
  float *q, *out, *lse;
  int n_q;
  int64_t q_pos0;
  std::vector<KvHead> heads;
  void operator()() const {
    for (int g = 0; g < kKvHeads; ++g) {
      AttnArgs a;
      a.q = q + g * kGroup * kHeadDim;
      a.q_stride = kQHeads * kHeadDim;
      a.n_q = n_q;
      a.n_qh = kGroup;
      a.head_dim = kHeadDim;
      a.q_pos0 = q_pos0;
      a.causal = true;
      a.scale = 1.0f / std::sqrt(static_cast<float>(kHeadDim));
      a.kv_dtype = DType::BF16;
      a.pieces = heads[g].pieces;
      a.out = out + g * kGroup * kHeadDim;
      a.out_stride = kQHeads * kHeadDim;
      a.lse = lse + static_cast<int64_t>(g) * n_q * kGroup;
      be->attention(a);
    }
  }
};

// Query/key pairs left after causal masking, summed over the query tokens.
double visible_pairs(int n_q, int64_t q_pos0, const std::vector<KvPiece>& pieces) {
  double pairs = 0;
  for (const auto& p : pieces)
    for (int t = 0; t < n_q; ++t) {
      const int64_t last = std::min(p.pos0 + p.n_tokens - 1, q_pos0 + t);
      if (last >= p.pos0) pairs += static_cast<double>(last - p.pos0 + 1);
    }
  return pairs;
}

bool has_nan(Backend& be, const float* dev, size_t n) {
  std::vector<float> h(std::min<size_t>(n, 1 << 20));
  be.download(h.data(), dev, h.size() * 4);
  for (float x : h)
    if (std::isnan(x)) return true;
  return false;
}

// segments: (n_tokens, pos0) of each piece of every KV head; queries are the last n_q
// positions of the last segment.
void bench_attention(Backend& be, const char* label, int n_q, int64_t q_pos0,
                     const std::vector<std::pair<int64_t, int64_t>>& segments, bool decode, bool quick,
                     double ceiling) {
  std::mt19937 rng(11);
  std::vector<void*> bufs;
  AttnRun run{&be, nullptr, nullptr, nullptr, n_q, q_pos0, {}};
  double kv_bytes = 0;
  for (int g = 0; g < kKvHeads; ++g) {
    KvHead h;
    for (auto [n, pos0] : segments) {
      KvPiece p;
      p.k = random_bf16(be, static_cast<size_t>(n) * kHeadDim, rng);
      p.v = random_bf16(be, static_cast<size_t>(n) * kHeadDim, rng);
      bufs.push_back(const_cast<void*>(p.k));
      bufs.push_back(const_cast<void*>(p.v));
      p.n_tokens = n;
      p.pos0 = pos0;
      h.pieces.push_back(p);
      kv_bytes += 2.0 * n * kHeadDim * 2;
    }
    run.heads.push_back(h);
  }
  const size_t qn = static_cast<size_t>(n_q) * kQHeads * kHeadDim;
  run.q = random_f32(be, qn, rng);
  run.out = static_cast<float*>(be.alloc(qn * 4));
  run.lse = static_cast<float*>(be.alloc(static_cast<size_t>(n_q) * kQHeads * 4));
  const double s = time_per_call(be, run, quick ? 0.2 : 1.0, quick ? 2 : 5);
  const bool nan = has_nan(be, run.out, qn);
  if (decode) {
    std::printf("%-44s %9.1f us/token   %7.1f GB/s of KV (%.0f MB)%s\n", label, s * 1e6, kv_bytes / s / 1e9,
                kv_bytes / 1e6, nan ? "   NaN IN OUTPUT" : "");
  } else {
    const double flops = 4.0 * visible_pairs(n_q, q_pos0, run.heads[0].pieces) * kHeadDim * kQHeads;
    const double tf = flops / s / 1e12;
    std::printf("%-44s %9.2f ms   %7.1f TFLOP/s   (%.0f%% of the GEMM ceiling)%s\n", label, s * 1e3, tf,
                100.0 * tf / ceiling, nan ? "   NaN IN OUTPUT" : "");
  }
  for (void* p : bufs) be.free(p);
  be.free(run.q);
  be.free(run.out);
  be.free(run.lse);
}

// The same prefill with all 8 KV heads in one call: each head's segments laid out as
// one slab (heads at a fixed stride), as the cuDNN path wants them.
void bench_attention_heads(Backend& be, const char* label, int n_q, int64_t q_pos0,
                           const std::vector<std::pair<int64_t, int64_t>>& segments, bool quick, double ceiling) {
  std::mt19937 rng(12);
  int64_t slab = 0;
  for (auto [n, pos0] : segments) slab += n;
  const size_t elems = static_cast<size_t>(slab) * kHeadDim * kKvHeads;
  auto* k = static_cast<uint8_t*>(random_bf16(be, elems, rng));
  auto* v = static_cast<uint8_t*>(random_bf16(be, elems, rng));
  const size_t qn = static_cast<size_t>(n_q) * kQHeads * kHeadDim;
  float* q = random_f32(be, qn, rng);
  auto* out = static_cast<float*>(be.alloc(qn * 4));
  auto* lse = static_cast<float*>(be.alloc(static_cast<size_t>(n_q) * kQHeads * 4));
  AttnArgs a;
  a.q = q;
  a.q_stride = kQHeads * kHeadDim;
  a.n_q = n_q;
  a.n_qh = kGroup;
  a.head_dim = kHeadDim;
  a.q_pos0 = q_pos0;
  a.causal = true;
  a.scale = 1.0f / std::sqrt(static_cast<float>(kHeadDim));
  a.kv_dtype = DType::BF16;
  int64_t off = 0;
  for (auto [n, pos0] : segments) {
    a.pieces.push_back(KvPiece{k + off * kHeadDim * 2, v + off * kHeadDim * 2, n, pos0, slab * kHeadDim});
    off += n;
  }
  a.out = out;
  a.out_stride = kQHeads * kHeadDim;
  a.lse = lse;
  a.n_kv_heads = kKvHeads;
  a.lse_head_stride = static_cast<int64_t>(n_q) * kGroup;
  const double s = time_per_call(be, [&] { be.attention(a); }, quick ? 0.2 : 1.0, quick ? 2 : 5);
  const bool nan = has_nan(be, out, qn);
  const double flops = 4.0 * visible_pairs(n_q, q_pos0, a.pieces) * kHeadDim * kQHeads;
  const double tf = flops / s / 1e12;
  std::printf("%-44s %9.2f ms   %7.1f TFLOP/s   (%.0f%% of the GEMM ceiling)%s\n", label, s * 1e3, tf,
              100.0 * tf / ceiling, nan ? "   NaN IN OUTPUT" : "");
  for (void* p : {static_cast<void*>(k), static_cast<void*>(v), static_cast<void*>(q), static_cast<void*>(out),
                  static_cast<void*>(lse)})
    be.free(p);
}

// cuDNN's call alone, BF16 Q in, BF16 O and the statistics out, all 8 KV heads: the
// path's ceiling, without the backend's own work around it (Q to BF16, O back to f32
// and merged). causal: n_kv == n_q, top-left.
void bench_cudnn_alone(Backend& be, const char* label, int n_q, int64_t n_kv, bool causal, bool quick,
                       double ceiling) {
  cudaStream_t stream = nullptr;
  BENCH_CHECK(cudaStreamCreate(&stream));
  std::string why;
  auto sdpa = cuda::make_cudnn_attention(stream, why);
  if (!sdpa) {
    std::printf("%-44s skipped: %s\n", label, why.c_str());
    BENCH_CHECK(cudaStreamDestroy(stream));
    return;
  }
  cuda::SdpaShape sh;
  sh.n_q = n_q;
  sh.n_qh = kGroup;
  sh.n_kv_heads = kKvHeads;
  sh.kv_head_stride = n_kv * kHeadDim;
  sh.n_kv = n_kv;
  sh.head_dim = kHeadDim;
  sh.causal = causal;
  sh.scale = 1.0f / std::sqrt(static_cast<float>(kHeadDim));
  std::mt19937 rng(13);
  const size_t qn = static_cast<size_t>(n_q) * kQHeads * kHeadDim, kvn = static_cast<size_t>(n_kv) * kKvHeads * kHeadDim;
  void* q = random_bf16(be, qn, rng);
  void* k = random_bf16(be, kvn, rng);
  void* v = random_bf16(be, kvn, rng);
  void* o = be.alloc(qn * 2);
  auto* stats = static_cast<float*>(be.alloc(static_cast<size_t>(n_q) * kQHeads * 4));
  if (sdpa->supports(sh)) {
    StreamClock clock(stream);
    const double s = time_per_call(
        clock, [&] { sdpa->run(sh, q, k, v, o, stats); }, quick ? 0.2 : 1.0, quick ? 2 : 5);
    // Causal: the chunk itself (queries at the keys' positions); otherwise keys before it.
    const double pairs = visible_pairs(n_q, causal ? 0 : n_kv, {KvPiece{nullptr, nullptr, n_kv, 0, 0}});
    const double tf = 4.0 * pairs * kHeadDim * kQHeads / s / 1e12;
    std::printf("%-44s %9.2f ms   %7.1f TFLOP/s   (%.0f%% of the GEMM ceiling)\n", label, s * 1e3, tf,
                100.0 * tf / ceiling);
  } else {
    std::printf("%-44s skipped: cuDNN has no plan for it\n", label);
  }
  for (void* p : {q, k, v, o, static_cast<void*>(stats)}) be.free(p);
  sdpa.reset();
  BENCH_CHECK(cudaStreamDestroy(stream));
}

// The three prefill shapes and the engine's chunk x block call (--case N: the
// Nth). For cuDNN's call alone: its keys (the 128K earlier keys without the chunk's
// own causal part) and whether it is causal.
struct PrefillShape {
  const char* name;
  int n_q;
  int64_t q_pos0;
  std::vector<std::pair<int64_t, int64_t>> segments;
  int64_t alone_kv;
  bool alone_causal;
};
const std::vector<PrefillShape>& prefill_shapes() {
  static const std::vector<PrefillShape> shapes = {
      {"  causal 16K", 16384, 0, {{16384, 0}}, 16384, true},
      {"  causal 32K", 32768, 0, {{32768, 0}}, 32768, true},
      {"  8K chunk after 128K cached keys", 8192, 131072, {{131072, 0}, {8192, 131072}}, 131072, false},
      {"  8K chunk x one earlier 8K block", 8192, 131072, {{8192, 0}}, 8192, false},
  };
  return shapes;
}

// Every prefill shape through one backend (a call per KV head); `only` (1-4; 0: all)
// keeps one, so a profiler sees that shape's launches alone.
void prefill_cases(Backend& be, const std::string& tag, int only, bool quick, double ceiling) {
  int i = 0;
  for (const PrefillShape& p : prefill_shapes())
    if (++i == only || only == 0)
      bench_attention(be, (p.name + tag).c_str(), p.n_q, p.q_pos0, p.segments, false, quick, ceiling);
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false, decode_only = false, once = false;  // --once: one 128K decode case (for profilers)
  bool default_only = false;
  std::string own_only;  // --own WARPS: that own block shape's prefill cases alone
  int only_case = 0;     // --case N: the Nth prefill shape alone (1-4)
  // Lines reach a log as they are printed, so a run cut short keeps what it measured.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  for (int i = 1; i < argc; ++i) {
    quick = quick || std::strcmp(argv[i], "--quick") == 0;
    decode_only = decode_only || std::strcmp(argv[i], "--decode") == 0;
    default_only = default_only || std::strcmp(argv[i], "--cudnn") == 0;
    once = once || std::strcmp(argv[i], "--once") == 0;
    if (i + 1 < argc && std::strcmp(argv[i], "--own") == 0) own_only = argv[++i];
    if (i + 1 < argc && std::strcmp(argv[i], "--case") == 0) only_case = std::atoi(argv[++i]);
    if (i + 1 < argc && std::strcmp(argv[i], "--sustained") == 0) g_sustained_s = std::atof(argv[++i]);
  }
  if (!headinfer::cuda_available()) {
    std::puts("cuda_attention: no usable CUDA device or driver");
    return 0;
  }
  try {
    auto be = headinfer::make_cuda_backend(0);
    std::printf("device: %s\nheads: %d query / %d KV, head_dim %d, BF16 KV, f32 q/out\n", be->name().c_str(),
                kQHeads, kKvHeads, kHeadDim);
    if (once) {
      bench_attention(*be, "  decode 128K context", 1, 131072, {{131073, 0}}, true, true, 0.0);
      return 0;
    }
    const double ceiling = decode_only ? 0.0 : gemm_ceiling_tflops(quick);
    if (!decode_only) {
      std::printf("%-44s %7.1f TFLOP/s\n", "cuBLAS BF16 GEMM 8192^3 (ceiling)", ceiling);
      std::puts("prefill (FLOPs = 4 * visible q-k pairs * head_dim * 32 heads; causal counts about half):");
      // The default path: cuDNN's fused attention where the backend found it.
      std::printf("attention path: %s\n", headinfer::cuda_attention_path(*be).c_str());
      if (own_only.empty()) {
        prefill_cases(*be, " [default path]", only_case, quick, ceiling);
        const std::string h = " [default, 8 KV heads/call]", c = " [cuDNN call alone, BF16 in/out]";
        int i = 0;
        for (const PrefillShape& p : prefill_shapes()) {
          if (++i != only_case && only_case != 0) continue;
          bench_attention_heads(*be, (p.name + h).c_str(), p.n_q, p.q_pos0, p.segments, quick, ceiling);
          bench_cudnn_alone(*be, (p.name + c).c_str(), p.n_q, p.alone_kv, p.alone_causal, quick, ceiling);
        }
      }
      if (default_only) return 0;
      // Own kernels, both tensor-core block shapes (HEADINFER_CUDA_ATTN_WARPS and
      // HEADINFER_CUDA_ATTN_PATH; the backend reads them when made).
      setenv("HEADINFER_CUDA_ATTN_PATH", "own", 1);
      const std::vector<std::string> shapes = own_only.empty()
                                                  ? std::vector<std::string>{"auto", "4", "8", "4x2", "wg", "wg2"}
                                                  : std::vector<std::string>{own_only};
      for (const std::string& warps : shapes) {
        if (warps[0] == 'w' && !headinfer::cuda::attention_wgmma_available()) {
          std::printf("  [own, %s]: skipped, the warpgroup-MMA kernel needs compute capability 9.0\n", warps.c_str());
          continue;
        }
        setenv("HEADINFER_CUDA_ATTN_WARPS", warps.c_str(), 1);
        auto pb = headinfer::make_cuda_backend(0);
        prefill_cases(*pb, " [own, " + warps + " warps]", only_case, quick, ceiling);
      }
      unsetenv("HEADINFER_CUDA_ATTN_WARPS");
      unsetenv("HEADINFER_CUDA_ATTN_PATH");
      if (!own_only.empty() || only_case != 0) return 0;
    }
    std::printf("%-44s %7.1f GB/s (read + write)\n", "device-to-device copy, 1 GiB (ceiling)", copy_gbps(quick));
    std::puts("decode (1 token, all 8 KV heads = 8 calls; GB/s = K+V bytes read / time):");
    for (int64_t ctx : {4096, 32768, 131072}) {
      const std::string label = "  decode " + std::to_string(ctx / 1024) + "K context";
      bench_attention(*be, label.c_str(), 1, ctx, {{ctx + 1, 0}}, true, quick, ceiling);
    }
    // Sensitivity to the number of key splits (blocks per SM the split count aims
    // for, HEADINFER_CUDA_ATTN_DECODE_BPS), and the CUDA-core kernel the decode path replaced.
    for (const char* bps : {"1", "2", "4", "8"}) {
      setenv("HEADINFER_CUDA_ATTN_DECODE_BPS", bps, 1);
      auto db = headinfer::make_cuda_backend(0);
      for (int64_t ctx : {32768, 131072}) {
        const std::string label = "  decode " + std::to_string(ctx / 1024) + "K, splits for " + bps + " blocks/SM";
        bench_attention(*db, label.c_str(), 1, ctx, {{ctx + 1, 0}}, true, quick, ceiling);
      }
    }
    unsetenv("HEADINFER_CUDA_ATTN_DECODE_BPS");
    // Programmatic dependent launch off (it is on by default; HEADINFER_CUDA_PDL is read
    // at every launch).
    setenv("HEADINFER_CUDA_PDL", "0", 1);
    for (int64_t ctx : {32768, 131072}) {
      const std::string label = "  decode " + std::to_string(ctx / 1024) + "K, no programmatic launch";
      bench_attention(*be, label.c_str(), 1, ctx, {{ctx + 1, 0}}, true, quick, ceiling);
    }
    unsetenv("HEADINFER_CUDA_PDL");
    // The CUDA-core decode kernel (f32 math) the tensor-core one replaced for BF16/F16 KV.
    setenv("HEADINFER_CUDA_ATTN_DECODE", "simt", 1);
    {
      auto mb = headinfer::make_cuda_backend(0);
      for (int64_t ctx : {4096, 32768, 131072}) {
        const std::string label = "  decode " + std::to_string(ctx / 1024) + "K, CUDA-core decode kernel";
        bench_attention(*mb, label.c_str(), 1, ctx, {{ctx + 1, 0}}, true, quick, ceiling);
      }
    }
    unsetenv("HEADINFER_CUDA_ATTN_DECODE");
    setenv("HEADINFER_CUDA_ATTN_PATH", "simt", 1);
    {
      auto sb = headinfer::make_cuda_backend(0);
      bench_attention(*sb, "  decode 32K, CUDA-core kernel (old path)", 1, 32768, {{32769, 0}}, true, quick, ceiling);
    }
    unsetenv("HEADINFER_CUDA_ATTN_PATH");
  } catch (const headinfer::Error& e) {
    std::fprintf(stderr, "cuda_attention: %s\n", e.with_location().c_str());
    return 1;
  }
  return 0;
}
