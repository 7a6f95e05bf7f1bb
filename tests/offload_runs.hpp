// Shared by the CPU and CUDA offloading tests: run a model through the Executor with
// a given KV schedule, and draw random schedules (homes, groups, buffers, host growth).
#pragma once

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "backend/backend.hpp"
#include "format/model_loader.hpp"
#include "kv/kv_schedule.hpp"
#include "runtime/executor.hpp"

namespace headinfer::offload_test {

struct RunSpec {
  int chunk = 16;
  int mlp_chunk = 0;
  DType kv_dtype = DType::F32;
  KvSchedule schedule;
};

inline std::vector<int32_t> prompt_for(int n, int vocab, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> d(3, vocab - 1);
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& x : ids) x = d(rng);
  return ids;
}

// Logits after the prompt, then after each of `decode` greedy steps.
inline std::vector<std::vector<float>> run(Backend& be, const LoadedModel& m, const std::vector<int32_t>& prompt, int decode,
                                    const RunSpec& spec, TransferStats* stats = nullptr) {
  ExecutorOptions eo;
  eo.max_chunk = spec.chunk;
  eo.mlp_chunk = spec.mlp_chunk;
  eo.capacity = static_cast<int64_t>(prompt.size()) + decode;
  eo.kv_dtype = spec.kv_dtype;
  eo.schedule = spec.schedule;
  Executor exec(be, m, eo);
  std::vector<std::vector<float>> out;
  const std::vector<float>* logits = nullptr;
  for (size_t i = 0; i < prompt.size(); i += static_cast<size_t>(spec.chunk)) {
    const int n = static_cast<int>(std::min<size_t>(static_cast<size_t>(spec.chunk), prompt.size() - i));
    logits = &exec.forward(prompt.data() + i, n);
  }
  out.push_back(*logits);
  for (int s = 0; s < decode; ++s) {
    const int32_t id = static_cast<int32_t>(std::max_element(logits->begin(), logits->end()) - logits->begin());
    logits = &exec.forward(&id, 1);
    out.push_back(*logits);
  }
  if (stats) *stats = exec.transfer_stats();
  return out;
}

// Greedy ids after a prompt, `steps` of them (the first from the prompt's logits):
// each step waiting for the id before it (forward_greedy), or queued before it is read
// back (Executor::issue_greedy).
inline std::vector<int32_t> greedy_ids(Backend& be, const LoadedModel& m, const ExecutorOptions& eo,
                                       const std::vector<int32_t>& prompt, int steps, bool ahead) {
  Executor e(be, m, eo);
  std::vector<int32_t> ids{e.forward_greedy(prompt.data(), static_cast<int>(prompt.size()))};
  if (!ahead) {
    while (static_cast<int>(ids.size()) < steps) ids.push_back(e.forward_greedy(&ids.back(), 1));
    return ids;
  }
  if (steps > 1) e.issue_greedy(&ids.back());
  while (static_cast<int>(ids.size()) < steps) {
    if (static_cast<int>(ids.size()) + 1 < steps) e.issue_greedy(nullptr);
    ids.push_back(e.take_greedy());
  }
  return ids;
}

inline KvSchedule random_schedule(const ModelConfig& cfg, DType kv, int64_t block, std::mt19937& rng, int kind) {
  KvSchedule s = KvSchedule::all_resident(cfg, kv);
  s.block_tokens = block;
  std::bernoulli_distribution coin(0.5);
  for (Home& h : s.homes) h = kind == 0 ? Home::Host : kind == 1 ? Home::Device : (coin(rng) ? Home::Host : Home::Device);
  std::uniform_int_distribution<int> g(1, cfg.n_kv_heads);
  const int common = g(rng);
  for (int& x : s.group_heads) x = coin(rng) ? common : g(rng);
  s.n_buffers = std::uniform_int_distribution<int>(2, 4)(rng);
  const int64_t head_block = 2 * block * static_cast<int64_t>(kv_row_bytes(cfg, kv));
  const int gmax = *std::max_element(s.group_heads.begin(), s.group_heads.end());
  // From exactly one block of the largest group to a few blocks per fill.
  s.buffer_bytes = gmax * head_block * std::uniform_int_distribution<int>(1, 3)(rng);
  s.host_chunk_bytes = coin(rng) ? 0 : 4096;  // grow a block (or a few) at a time
  // Sometimes only the first block or two of the pool pinned, the rest pageable.
  int64_t layer_block = 0;
  for (Home h : s.homes) layer_block += h == Home::Host ? head_block : 0;
  s.pinned_limit = coin(rng) ? -1 : std::uniform_int_distribution<int64_t>(0, 2)(rng) * std::max<int64_t>(layer_block, 4096);
  return s;
}

}  // namespace headinfer::offload_test
