// CPU decode speed against the memory-bandwidth floor, measured in the same run:
// floor = weight bytes read per decoded token / this machine's read bandwidth.
//
//   build/cpu/bench/cpu_decode [MODEL=synthetic:llama-3.2-1b] [DECODE_TOKENS=32] [PROMPT_TOKENS=64] [THREADS=0]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "backend/cpu/membw.hpp"
#include "common/units.hpp"
#include "format/model_loader.hpp"
#include "headinfer/error.hpp"
#include "runtime/executor.hpp"
#include "runtime/sampler.hpp"

using namespace headinfer;

int main(int argc, char** argv) try {
  const std::string spec = argc > 1 ? argv[1] : "synthetic:llama-3.2-1b";
  const int n_decode = argc > 2 ? std::atoi(argv[2]) : 32;
  const int n_prompt = argc > 3 ? std::atoi(argv[3]) : 64;
  const int threads = argc > 4 ? std::atoi(argv[4]) : 0;

  LoadedModel m = load_model(spec);
  auto be = make_cpu_backend(threads);
  ExecutorOptions eo;
  eo.capacity = n_prompt + n_decode + 1;
  eo.max_chunk = n_prompt;
  eo.kv_dtype = m.weight_dtype == DType::BF16 ? DType::BF16 : DType::F32;
  Executor exec(*be, m, eo);

  // Every layer matrix and the LM head stream once per token; an untied embedding
  // table contributes one row only.
  int64_t bytes = static_cast<int64_t>(m.weights.total_bytes());
  if (!m.config.tie_embeddings) bytes -= static_cast<int64_t>(m.weights.tok_embd.nbytes());

  std::vector<int32_t> prompt(static_cast<size_t>(n_prompt));
  for (int i = 0; i < n_prompt; ++i) prompt[i] = 1000 + 7 * i % (m.config.vocab_size - 1000);
  int32_t tok = argmax(exec.forward(prompt.data(), n_prompt));
  std::vector<double> ms;
  for (int i = 0; i < n_decode; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    tok = argmax(exec.forward(&tok, 1));
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  // Bandwidth right after decoding, so both see the same machine conditions.
  ThreadPool pool(threads);
  const double gbs = measure_read_bandwidth_gbs(pool);
  std::sort(ms.begin(), ms.end());
  const double med = ms[ms.size() / 2];
  const double floor_ms = static_cast<double>(bytes) / (gbs * 1e9) * 1e3;
  std::printf("| model | threads | weights read/token | read bandwidth | floor ms/token | decode ms/token (median, min-max) | tok/s | x floor |\n");
  std::printf("|---|---|---|---|---|---|---|---|\n");
  std::printf("| %s | %d | %s | %.1f GB/s | %.1f | %.1f (%.1f-%.1f) | %.2f | %.2f |\n", spec.c_str(), pool.size(),
              format_bytes(bytes).c_str(), gbs, floor_ms, med, ms.front(), ms.back(), 1e3 / med, med / floor_ms);
  return 0;
} catch (const Error& e) {
  std::fprintf(stderr, "cpu_decode: error: %s\n", e.what());
  return 1;
}
