// One passkey trial through the engine's normal path (Executor + Generator, chunked
// prefill, greedy decode), shared by the needle tests.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <memory>
#include <string>

#include "backend/backend.hpp"
#include "format/model_loader.hpp"
#include "format/needle.hpp"
#include "runtime/generator.hpp"

namespace headinfer::test {

struct NeedleTrial {
  std::string expected, answer;
  bool found() const { return answer == expected; }
};

// A model, its tokenizer and a CPU backend, kept for many trials.
class NeedleRig {
 public:
  explicit NeedleRig(const std::string& spec = "synthetic:needle")
      : model_(load_model(spec)), tok_(model_.load_tokenizer()), backend_(make_cpu_backend()) {}

  NeedleTrial run(int64_t context, double depth, uint64_t seed = 1, int chunk = 512) {
    const needle::NeedlePrompt p = needle::make_needle_prompt(context, depth, seed);
    ExecutorOptions eo;
    eo.max_chunk = chunk;
    eo.capacity = context + needle::kKeyDigits;
    eo.kv_dtype = model_.weight_dtype == DType::BF16 ? DType::BF16 : DType::F32;
    Executor exec(*backend_, model_, eo);
    Generator gen(exec, *tok_);
    GenerateRequest req;
    req.prompt = p.ids;
    req.max_tokens = needle::kKeyDigits;
    req.sampling.temperature = 0.0f;
    req.ignore_eos = true;
    req.chunk_size = chunk;
    req.max_context = eo.capacity;
    GenerateResult r = gen.run(req);
    return {p.key_text, needle::digits_text(r.tokens)};
  }

  const LoadedModel& model() const { return model_; }
  Backend& backend() { return *backend_; }

 private:
  LoadedModel model_;
  std::unique_ptr<Tokenizer> tok_;
  std::unique_ptr<Backend> backend_;
};

// Depths 0, 0.1, ..., 1.0.
inline double depth_step(int i) { return i / 10.0; }

}  // namespace headinfer::test
