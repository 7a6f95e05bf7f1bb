// The headinfer command line: one file per subcommand, sharing the options that
// pick and load a model.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "format/model_loader.hpp"
#include "kv/plan.hpp"
#include "runtime/executor.hpp"

namespace headinfer::cli {

struct ModelOptions {
  std::string model = "synthetic:tiny-gqa";
  std::string backend = "auto";
  int threads = 0;
};

void add_model_options(CLI::App& app, ModelOptions& o);

// Each registers a subcommand and returns the function that runs it.
using Runner = std::function<int()>;
Runner add_bench(CLI::App& app);
Runner add_demo(CLI::App& app);
Runner add_export(CLI::App& app);
Runner add_generate(CLI::App& app);
Runner add_info(CLI::App& app);
Runner add_tokenize(CLI::App& app);
Runner add_plan(CLI::App& app);

// Options shared by plan and generate (cmd_plan.cpp).
struct PlanOptions {
  std::string gpu_memory;
  std::string offload = "auto";
  double link_gbs = 0;
  int64_t host_memory = -1;  // host RAM the KV pool may take (< 0: host_memory_available()); bench --host-memory
};
void add_plan_options(CLI::App& app, PlanOptions& o);
PlanInputs plan_inputs_for(const LoadedModel& m, Backend& backend, const PlanOptions& o, DType kv_dtype,
                           int64_t context, int chunk);
DType kv_dtype_for(const std::string& name, DType weights);
// Plans the request (refusing before anything is allocated), sets the backend's
// budget and fills eo's chunk, MLP passes and KV schedule; prints a one-line
// summary on stderr when the plan offloads or runs under a budget.
Plan apply_plan(const LoadedModel& m, Backend& backend, const PlanOptions& o, int chunk, ExecutorOptions& eo);

// A file of token ids (whitespace, commas or a JSON list), each checked against
// the vocabulary (token_dump.cpp).
std::vector<int32_t> read_token_ids(const std::string& path, int vocab_size);
// JSON {prompt_tokens, vocab_size, generated_ids, last_prompt_logits}.
void write_logits_dump(const std::string& path, const std::vector<int32_t>& prompt, const std::vector<float>& logits,
                       const std::vector<int32_t>& generated);

// Reads -p / -f into a string; exactly one must be given (unless allow_none).
std::string read_prompt(const std::string& text, const std::string& file, bool allow_none);

}  // namespace headinfer::cli
