// One request end to end on an Executor: chunked prefill, the decode loop,
// sampling, stop conditions (EOS, stop strings, token limit, full context,
// cancellation), text streamed in whole UTF-8 characters, and timing stats.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "runtime/executor.hpp"
#include "runtime/sampler.hpp"
#include "tokenizer/tokenizer.hpp"

namespace headinfer {

struct GenerateRequest {
  std::vector<int32_t> prompt;  // already tokenized (BOS included if wanted)
  int max_tokens = 128;         // < 0: until the context is full
  SamplingParams sampling;
  std::vector<std::string> stop;  // generation ends before the first occurrence
  bool ignore_eos = false;
  int chunk_size = 512;
  int64_t max_context = 0;        // hard limit on prompt + generated tokens
  // Greedy decoding queues each step before the host has read the token before it
  // (Executor::issue_greedy); false waits for every token first (lock step: A/B runs).
  bool greedy_ahead = true;
  const std::atomic<bool>* cancel = nullptr;
  std::function<void(const std::string&)> on_text;              // streamed text pieces
  std::function<void(int32_t)> on_token;                         // every generated id
  std::function<void(int64_t done, int64_t total)> on_prefill;   // after each chunk
  std::function<void(const std::vector<float>&)> on_prompt_logits;  // the last prompt position's logits
};

struct GenerateStats {
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  double prefill_seconds = 0;
  double decode_seconds = 0;  // from the first to the last decode step
  TransferStats prefill_transfer, decode_transfer;  // KV bytes moved host <-> device
  double prefill_tps() const { return prefill_seconds > 0 ? prompt_tokens / prefill_seconds : 0; }
  // Tokens produced by decode steps (the first token comes from prefill's logits).
  double decode_tps() const {
    return decode_seconds > 0 && generated_tokens > 1 ? (generated_tokens - 1) / decode_seconds : 0;
  }
};

struct GenerateResult {
  std::vector<int32_t> tokens;  // generated ids (a matched stop string's tokens included)
  std::string text;             // generated text, cut before a stop string
  std::string stop_reason;      // "eos", "stop", "length", "context", "cancelled"
  GenerateStats stats;
};

class Generator {
 public:
  Generator(Executor& exec, const Tokenizer& tok) : exec_(exec), tok_(tok) {}
  // Throws Error when the prompt is empty or longer than max_context.
  GenerateResult run(const GenerateRequest& req);

 private:
  Executor& exec_;
  const Tokenizer& tok_;
};

}  // namespace headinfer
