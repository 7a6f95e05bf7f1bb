#include <csignal>
#include <cstdio>
#include <iostream>
#include <random>

#include "backend/backend_factory.hpp"
#include "commands.hpp"
#include "common/process_memory.hpp"
#include "common/progress.hpp"
#include "common/units.hpp"
#include "format/model_loader.hpp"
#include "headinfer/error.hpp"
#include "runtime/generator.hpp"
#include "tokenizer/chat_template.hpp"

namespace headinfer::cli {
namespace {

std::atomic<bool> g_cancel{false};
// The first Ctrl-C asks the generator to stop at the next chunk or token (the pool
// and device memory are then freed in order); a second one ends the process at once.
void on_sigint(int) {
  g_cancel.store(true);
  std::signal(SIGINT, SIG_DFL);
}

struct GenerateOptions {
  ModelOptions model;
  std::string prompt, file, max_context, kv_type = "auto";
  std::string prompt_ids_file;  // --prompt-ids: the exact prompt as token ids
  std::string dump_logits;      // --dump-logits: JSON of the last prompt logits and generated ids
  int64_t prompt_tokens = 0;
  int n_predict = 128;
  int chunk_size = 0;  // 0: the plan's
  PlanOptions plan;
  SamplingParams sampling;
  int64_t seed = -1;
  bool ignore_eos = false, no_bos = false;
  bool prompt_given = false;  // -p was on the command line, even as ""
  std::vector<std::string> stop;
  bool chat = false;
  std::string chat_template, system;
};

// The chat format: the one the user named, else the one the model's tokenizer
// carries or implies.
ChatFormat chat_format_for(const GenerateOptions& o, const Tokenizer& tok) {
  if (!o.chat_template.empty()) return chat_format_from_name(o.chat_template);
  if (auto f = detect_chat_format(tok)) return *f;
  HI_FAIL("--chat: cannot tell this model's chat format; name it with --chat-template "
          "(llama3, llama2, mistral-v1, mistral-v3, chatml)");
}

int run_generate(const GenerateOptions& o) {
  // From the start: a Ctrl-C while the model loads stops the request before its first
  // chunk (a second one ends the process at once).
  std::signal(SIGINT, on_sigint);
  // An explicit empty -p "" means: start from BOS alone.
  const std::string text =
      read_prompt(o.prompt, o.file, o.prompt_tokens > 0 || o.prompt_given || !o.prompt_ids_file.empty());
  LoadedModel model = load_model(o.model.model);
  const ModelConfig& cfg = model.config;
  auto tok = model.load_tokenizer();

  int64_t max_context = cfg.max_position;
  if (!o.max_context.empty()) {
    max_context = parse_tokens(o.max_context, "--max-context");
    HI_CHECK(max_context > 0, "--max-context must be positive");
    if (max_context > cfg.max_position)
      std::fprintf(stderr, "headinfer: warning: --max-context %lld is past the model's trained context of %lld tokens\n",
                   static_cast<long long>(max_context), static_cast<long long>(cfg.max_position));
  }

  std::vector<int32_t> prompt;
  if (!o.prompt_ids_file.empty()) {
    HI_CHECK(text.empty() && o.prompt_tokens == 0, "--prompt-ids replaces -p/-f/--prompt-tokens; give one of them");
    prompt = read_token_ids(o.prompt_ids_file, cfg.vocab_size);
  } else if (o.prompt_tokens > 0) {
    // A reproducible stand-in prompt of random ordinary tokens, for measuring.
    HI_CHECK(text.empty(), "--prompt-tokens replaces -p/-f; give one of them");
    std::mt19937_64 rng(1234);
    if (tok->bos_id() >= 0 && !o.no_bos) prompt.push_back(tok->bos_id());
    std::uniform_int_distribution<int32_t> pick(0, tok->vocab_size() - 1);
    while (static_cast<int64_t>(prompt.size()) < o.prompt_tokens) {
      const int32_t id = pick(rng);
      if (!tok->is_control(id)) prompt.push_back(id);
    }
  } else if (o.chat) {
    std::vector<ChatMessage> msgs;
    if (!o.system.empty()) msgs.push_back({"system", o.system});
    msgs.push_back({"user", text});
    prompt = encode_chat(*tok, chat_format_for(o, *tok), msgs, /*add_generation_prompt=*/true);
  } else {
    prompt = tok->encode(text, !o.no_bos);
  }
  if (prompt.empty()) {
    HI_CHECK(tok->bos_id() >= 0, "empty prompt and the tokenizer has no BOS token to start from");
    prompt.push_back(tok->bos_id());
  }

  HI_CHECK(static_cast<int64_t>(prompt.size()) <= max_context,
           "prompt of " << prompt.size() << " tokens is longer than the allowed context of " << max_context
                        << " tokens (--max-context)");
  auto backend = make_backend(o.model.backend, o.model.threads);
  ExecutorOptions eo;
  eo.kv_dtype = kv_dtype_for(o.kv_type, model.weight_dtype);
  eo.capacity = std::min<int64_t>(max_context, static_cast<int64_t>(prompt.size()) + std::max(o.n_predict, 0) + 1);
  const Plan plan = apply_plan(model, *backend, o.plan, o.chunk_size, eo);
  Executor exec(*backend, model, eo);
  Generator gen(exec, *tok);

  GenerateRequest req;
  req.prompt = prompt;
  req.max_tokens = o.n_predict;
  req.sampling = o.sampling;
  req.sampling.seed = o.seed >= 0 ? static_cast<uint64_t>(o.seed) : std::random_device{}();
  req.stop = o.stop;
  req.ignore_eos = o.ignore_eos;
  req.chunk_size = plan.chunk;
  req.max_context = max_context;
  req.cancel = &g_cancel;
  Progress progress("prefill", static_cast<int64_t>(prompt.size()), stderr_is_terminal());
  int64_t prefilled = 0;
  req.on_prefill = [&](int64_t done, int64_t) {
    prefilled = done;
    progress.update(done);
  };
  bool first = true;
  req.on_text = [&](const std::string& s) {
    if (first) progress.finish();
    first = false;
    std::fwrite(s.data(), 1, s.size(), stdout);
    std::fflush(stdout);
  };
  std::vector<float> prompt_logits;
  if (!o.dump_logits.empty()) req.on_prompt_logits = [&](const std::vector<float>& l) { prompt_logits = l; };
  GenerateResult r = gen.run(req);
  progress.finish();
  std::signal(SIGINT, SIG_DFL);
  std::fputc('\n', stdout);
  std::fflush(stdout);
  if (!o.dump_logits.empty()) write_logits_dump(o.dump_logits, prompt, prompt_logits, r.tokens);
  const GenerateStats& s = r.stats;
  const DeviceMemoryInfo mem = backend->device_memory();
  const int64_t dev_peak = mem.driver_peak_used >= 0 ? mem.driver_peak_used : mem.peak;
  const TransferStats& pt = s.prefill_transfer;
  const TransferStats& dt = s.decode_transfer;
  const double link = s.decode_seconds > 0 ? dt.h2d_bytes / s.decode_seconds / 1e9 : 0;
  std::fprintf(stderr,
               "stats: backend %s | prompt %lld tok | prefill %.1f tok/s (%.2f s) | decode %.2f tok/s (%lld tok, "
               "%.2f s) | stop %s | KV %s | peak RSS %s | device peak %s | host KV %s | H2D %s + %s, D2H %s + %s "
               "(prefill + decode) | decode link %.2f GB/s\n",
               backend->name().c_str(), static_cast<long long>(s.prompt_tokens), s.prefill_tps(), s.prefill_seconds,
               s.decode_tps(), static_cast<long long>(s.generated_tokens), s.decode_seconds, r.stop_reason.c_str(),
               dtype_name(eo.kv_dtype), format_bytes(peak_rss_bytes()).c_str(),
               dev_peak >= 0 ? format_bytes(dev_peak).c_str() : "n/a",
               format_bytes(static_cast<int64_t>(exec.kv().host_bytes())).c_str(), format_bytes(pt.h2d_bytes).c_str(),
               format_bytes(dt.h2d_bytes).c_str(), format_bytes(pt.d2h_bytes).c_str(),
               format_bytes(dt.d2h_bytes).c_str(), link);
  if (r.stop_reason == "cancelled") {
    if (prefilled < static_cast<int64_t>(prompt.size()))
      std::fprintf(stderr, "generate: cancelled by Ctrl-C during prefill, after %lld of %zu prompt tokens\n",
                   static_cast<long long>(prefilled), prompt.size());
    else
      std::fprintf(stderr, "generate: cancelled by Ctrl-C after %zu generated tokens\n", r.tokens.size());
    return 130;  // the shell's code for a process ended by SIGINT
  }
  return 0;
}

}  // namespace

Runner add_generate(CLI::App& app) {
  auto* cmd = app.add_subcommand("generate", "generate text from a prompt, streamed to stdout; stats on stderr");
  auto o = std::make_shared<GenerateOptions>();
  add_model_options(*cmd, o->model);
  auto* prompt_opt = cmd->add_option("-p,--prompt", o->prompt, "prompt text (\"\" starts from BOS alone)");
  cmd->add_option("-f,--file", o->file, "file holding the prompt text");
  cmd->add_option("--prompt-tokens", o->prompt_tokens, "use N random tokens as the prompt (benchmarking)");
  cmd->add_option("--prompt-ids", o->prompt_ids_file,
                  "file of token ids (whitespace- or comma-separated): the exact prompt, no BOS added");
  cmd->add_option("--dump-logits", o->dump_logits,
                  "write JSON: the last prompt position's logits (f32) and the generated ids (parity checks)");
  cmd->add_option("-n,--n-predict", o->n_predict, "tokens to generate (-1: until EOS or the context is full)")
      ->capture_default_str();
  cmd->add_option("--temp", o->sampling.temperature, "temperature (0: greedy)")->capture_default_str();
  cmd->add_option("--top-k", o->sampling.top_k, "top-k (0: off)")->capture_default_str();
  cmd->add_option("--top-p", o->sampling.top_p, "top-p (1: off)")->capture_default_str();
  cmd->add_option("--min-p", o->sampling.min_p, "min-p (0: off)")->capture_default_str();
  cmd->add_option("--repeat-penalty", o->sampling.repeat_penalty, "repetition penalty (1: off)")->capture_default_str();
  cmd->add_option("--repeat-last-n", o->sampling.repeat_last_n, "tokens the penalty looks back at")->capture_default_str();
  cmd->add_option("-s,--seed", o->seed, "sampling seed (-1: random)")->capture_default_str();
  cmd->add_flag("--ignore-eos", o->ignore_eos, "keep generating past end-of-sequence tokens");
  cmd->add_flag("--no-bos", o->no_bos, "do not add the BOS token");
  cmd->add_option("--stop", o->stop, "stop before this string (repeatable)");
  cmd->add_flag("--chat", o->chat, "wrap the prompt as a user turn in the model's chat template");
  cmd->add_option("--chat-template", o->chat_template, "chat format: llama3, llama2, mistral-v1, mistral-v3, chatml");
  cmd->add_option("--system", o->system, "system message for --chat");
  cmd->add_option("--chunk-size", o->chunk_size, "prefill chunk size in tokens (0: the plan's roofline choice)")
      ->capture_default_str();
  add_plan_options(*cmd, o->plan);
  cmd->add_option("-c,--max-context", o->max_context, "longest context allowed (default: the model's trained context)");
  cmd->add_option("--kv-type", o->kv_type, "KV cache type: auto, f32, bf16, f16")->capture_default_str();
  return [o, prompt_opt] {
    o->prompt_given = prompt_opt->count() > 0;
    return run_generate(*o);
  };
}

}  // namespace headinfer::cli
