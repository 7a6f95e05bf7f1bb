// `headinfer demo`: the passkey test on the built-in needle model. A haystack of
// filler words hides a random 5-digit key behind the marker word; the prompt ends
// with the marker, and the model must answer with the key. It goes through the
// same path as `generate` (Executor, chunked prefill, Generator), so it exercises
// long-context attention end to end with an answer that is right or wrong.
#include <csignal>
#include <cstdio>
#include <string>

#include "backend/backend_factory.hpp"
#include "commands.hpp"
#include "common/process_memory.hpp"
#include "common/progress.hpp"
#include "common/units.hpp"
#include "format/model_loader.hpp"
#include "format/needle.hpp"
#include "headinfer/error.hpp"
#include "runtime/generator.hpp"

namespace headinfer::cli {
namespace {

std::atomic<bool> g_demo_cancel{false};
void on_demo_sigint(int) { g_demo_cancel.store(true); }

// Default contexts: about a minute of prefill on the machine at hand. On the CPU
// the needle model's prefill is all attention (quadratic in the context): 8K took
// 13-26 s and 32K 270 s on a shared two-core machine, so 16K (docs/needle.md).
// A GPU takes 1M.
constexpr int64_t kCpuDefaultContext = 16384;
constexpr int64_t kGpuDefaultContext = int64_t{1} << 20;

struct DemoOptions {
  ModelOptions model;
  std::string context;  // empty: the backend's default
  double depth = 0.5;
  uint64_t seed = 1;
  int chunk_size = 0;  // 0: the plan's
  PlanOptions plan;
};

// "... word word passkey 3 0 1 2 7 word ..." around the key, to show what was hidden.
std::string excerpt(const Tokenizer& tok, const needle::NeedlePrompt& p) {
  const int64_t from = std::max<int64_t>(1, p.key_position - 6);
  const int64_t to = std::min<int64_t>(static_cast<int64_t>(p.ids.size()), p.key_position + needle::kKeyDigits + 5);
  std::vector<int32_t> ids(p.ids.begin() + from, p.ids.begin() + to);
  return (from > 1 ? "... " : "") + tok.decode(ids) + (to < static_cast<int64_t>(p.ids.size()) ? " ..." : "");
}

int run_demo(const DemoOptions& o) {
  auto backend = make_backend(o.model.backend, o.model.threads);
  const bool on_cpu = backend->name() == "cpu";
  // F32 on the CPU (its reference path); BF16 on a GPU, where attention then runs on
  // tensor cores (a 1M prefill in seconds, not minutes).
  const std::string spec =
      !o.model.model.empty() ? o.model.model : (on_cpu ? "synthetic:needle" : "synthetic:needle,dtype=bf16");
  LoadedModel model = load_model(spec);
  auto tok = model.load_tokenizer();
  HI_CHECK(model.config.vocab_size == needle::kVocab && tok->token_id("\xE2\x96\x81passkey") == needle::kMarker,
           spec << ": demo needs the needle model's vocabulary (use -m synthetic:needle[,dtype=bf16])");
  const int64_t context = o.context.empty() ? (on_cpu ? kCpuDefaultContext : kGpuDefaultContext)
                                            : parse_tokens(o.context, "--context");
  HI_CHECK(context + needle::kKeyDigits <= model.config.max_position,
           "--context: " << context << " tokens plus the answer exceed the model's context of "
                         << model.config.max_position);
  const needle::NeedlePrompt prompt = needle::make_needle_prompt(context, o.depth, o.seed);

  ExecutorOptions eo;
  eo.kv_dtype = model.weight_dtype == DType::BF16 ? DType::BF16 : DType::F32;
  eo.capacity = context + needle::kKeyDigits;
  const Plan plan = apply_plan(model, *backend, o.plan, o.chunk_size, eo);
  const ModelConfig& c = model.config;
  std::printf("model    %s (%s weights, %d layers, %d heads of %d, rope theta %g)\n", model.spec.c_str(),
              dtype_name(model.weight_dtype), c.n_layers, c.n_heads, c.head_dim, c.rope_theta);
  std::printf("plan     backend %s | context %lld tokens | chunk %d | KV %s, %s: %lld slabs resident, %lld offloaded\n",
              backend->name().c_str(), static_cast<long long>(context), plan.chunk, dtype_name(eo.kv_dtype),
              format_bytes(c.kv_bytes_per_token(eo.kv_dtype == DType::BF16 ? 2 : 4) * eo.capacity).c_str(),
              static_cast<long long>(plan.resident_slabs), static_cast<long long>(plan.offloaded_slabs));
  std::printf("needle   key %s at depth %.2f (token %lld of %lld)\n", prompt.key_text.c_str(), o.depth,
              static_cast<long long>(prompt.key_position), static_cast<long long>(context));
  std::printf("         %s\n", excerpt(*tok, prompt).c_str());
  std::fflush(stdout);

  Executor exec(*backend, model, eo);
  Generator gen(exec, *tok);
  GenerateRequest req;
  req.prompt = prompt.ids;
  req.max_tokens = needle::kKeyDigits;
  req.sampling.temperature = 0.0f;  // greedy: the answer is the argmax or nothing
  req.ignore_eos = true;
  req.chunk_size = plan.chunk;
  req.max_context = eo.capacity;
  req.cancel = &g_demo_cancel;
  Progress progress("prefill", context, stderr_is_terminal());
  req.on_prefill = [&](int64_t done, int64_t) { progress.update(done); };
  std::signal(SIGINT, on_demo_sigint);
  GenerateResult r = gen.run(req);
  progress.finish();
  std::signal(SIGINT, SIG_DFL);
  HI_CHECK(r.stop_reason != "cancelled", "demo: cancelled");

  const std::string found = needle::digits_text(r.tokens);
  const bool match = r.tokens == prompt.key;
  std::printf("answer   %s\n", found.c_str());
  std::printf("result   %s (expected %s)\n", match ? "FOUND" : "NOT FOUND", prompt.key_text.c_str());
  std::fflush(stdout);
  const GenerateStats& s = r.stats;
  std::fprintf(stderr,
               "stats: backend %s | prompt %lld tok | prefill %.1f tok/s (%.2f s) | decode %.2f tok/s (%lld tok, "
               "%.2f s) | stop %s | KV %s | peak RSS %s\n",
               backend->name().c_str(), static_cast<long long>(s.prompt_tokens), s.prefill_tps(), s.prefill_seconds,
               s.decode_tps(), static_cast<long long>(s.generated_tokens), s.decode_seconds, r.stop_reason.c_str(),
               dtype_name(eo.kv_dtype), format_bytes(peak_rss_bytes()).c_str());
  return match ? 0 : 2;
}

}  // namespace

Runner add_demo(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "demo", "passkey retrieval on the built-in needle model (default -m synthetic:needle, with BF16 weights on a "
              "GPU): exit 0 when the key is found, 2 when not");
  auto o = std::make_shared<DemoOptions>();
  o->model.model = "";  // synthetic:needle, BF16 on a GPU (run_demo)
  add_model_options(*cmd, o->model);
  cmd->add_option("--context", o->context,
                  "prompt length in tokens, e.g. 65536 or 64K (default: 16K on CPU, 1M on a GPU)");
  cmd->add_option("--depth", o->depth, "where the key sits, 0 (start) .. 1 (end)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--seed", o->seed, "seed of the key and the filler words")->capture_default_str();
  cmd->add_option("--chunk-size", o->chunk_size, "prefill chunk size in tokens (0: the plan's)")->capture_default_str();
  add_plan_options(*cmd, o->plan);
  return [o] { return run_demo(*o); };
}

}  // namespace headinfer::cli
