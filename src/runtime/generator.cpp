#include "runtime/generator.hpp"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <string>

#include "headinfer/error.hpp"

namespace headinfer {
namespace {

// HEADINFER_HOST_SAMPLING=1: every sampled step reads the whole logits row back and
// samples on the host, as before the device top-k (for benchmarks; the same draws).
bool host_sampling() {
  static const bool on = [] {
    const char* e = std::getenv("HEADINFER_HOST_SAMPLING");
    return e && std::string(e) == "1";
  }();
  return on;
}

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Holds back streamed text that might be the start of a stop string.
class StopMatcher {
 public:
  explicit StopMatcher(const std::vector<std::string>& stops) : stops_(stops) {}

  // Appends text; returns true when a stop string is now complete (text() is cut
  // before it).
  bool append(const std::string& piece) {
    text_ += piece;
    for (const std::string& s : stops_) {
      if (s.empty()) continue;
      const size_t from = text_.size() >= piece.size() + s.size() ? text_.size() - piece.size() - s.size() + 1 : 0;
      const size_t at = text_.find(s, from);
      if (at != std::string::npos) {
        text_.resize(at);
        return true;
      }
    }
    return false;
  }
  // Text that can no longer be part of a stop string and was not handed out yet.
  std::string take_safe() {
    size_t hold = 0;
    for (const std::string& s : stops_)
      for (size_t k = std::min(s.size() - (s.empty() ? 0 : 1), text_.size()); k > hold; --k)
        if (text_.compare(text_.size() - k, k, s, 0, k) == 0) {
          hold = k;
          break;
        }
    const size_t safe = text_.size() - hold;
    std::string out = text_.substr(emitted_, safe > emitted_ ? safe - emitted_ : 0);
    emitted_ = std::max(emitted_, safe);
    return out;
  }
  std::string take_rest() {
    std::string out = text_.substr(std::min(emitted_, text_.size()));
    emitted_ = text_.size();
    return out;
  }
  const std::string& text() const { return text_; }

 private:
  const std::vector<std::string>& stops_;
  std::string text_;
  size_t emitted_ = 0;
};

}  // namespace

GenerateResult Generator::run(const GenerateRequest& req) {
  const int64_t n_prompt = static_cast<int64_t>(req.prompt.size());
  HI_CHECK(n_prompt > 0, "empty prompt: nothing to condition on (add BOS or text)");
  HI_CHECK(req.max_context > 0, "max context must be positive");
  HI_CHECK(n_prompt <= req.max_context, "prompt of " << n_prompt << " tokens is longer than the allowed context of "
                                                     << req.max_context << " tokens (--max-context)");
  HI_CHECK(req.chunk_size > 0, "--chunk-size must be positive, got " << req.chunk_size);
  auto cancelled = [&] { return req.cancel && req.cancel->load(std::memory_order_relaxed); };

  const int64_t want = req.max_tokens < 0 ? req.max_context : n_prompt + req.max_tokens;
  exec_.reset();
  exec_.reserve(std::min(want, req.max_context));

  GenerateResult res;
  res.stats.prompt_tokens = n_prompt;
  Sampler sampler(req.sampling);
  for (int32_t id : req.prompt) sampler.accept(id);

  // Prefill, chunk by chunk.
  const TransferStats moved0 = exec_.transfer_stats();
  auto moved_since = [&](const TransferStats& a) {
    const TransferStats& b = exec_.transfer_stats();
    return TransferStats{b.h2d_bytes - a.h2d_bytes, b.d2h_bytes - a.d2h_bytes, b.h2d_copies - a.h2d_copies,
                         b.d2h_copies - a.d2h_copies};
  };
  const auto t_prefill = Clock::now();
  const std::vector<float>* logits = nullptr;
  for (int64_t done = 0; done < n_prompt;) {
    if (cancelled()) {
      res.stop_reason = "cancelled";
      res.stats.prefill_seconds = seconds_since(t_prefill);
      return res;
    }
    const int n = static_cast<int>(std::min<int64_t>(req.chunk_size, n_prompt - done));
    logits = &exec_.forward(req.prompt.data() + done, n);
    done += n;
    if (req.on_prefill) req.on_prefill(done, n_prompt);
  }
  res.stats.prefill_seconds = seconds_since(t_prefill);
  res.stats.prefill_transfer = moved_since(moved0);
  if (req.on_prompt_logits) req.on_prompt_logits(*logits);
  const TransferStats moved1 = exec_.transfer_stats();

  StreamDecoder stream(tok_);
  StopMatcher stops(req.stop);
  auto emit = [&](const std::string& s) {
    if (!s.empty() && req.on_text) req.on_text(s);
  };
  // Greedy without a penalty needs no logits on the host: the backend finds the next
  // id (the same first maximum the sampler would take) and only it comes back. Its
  // steps run one ahead of the host (Executor::issue_greedy): the step after a token
  // is queued before the host has read that token, and dropped if the token ends the
  // generation, so the device never waits for the host between tokens.
  const bool on_device = req.sampling.temperature <= 0.f && req.sampling.repeat_penalty == 1.0f;
  // Whether a decode step may follow the first `produced` tokens: within max_tokens, and
  // its position (the prompt plus the steps before it) within max_context.
  auto may_step = [&](int64_t produced) {
    return (req.max_tokens < 0 || produced < req.max_tokens) && n_prompt + produced - 1 < req.max_context;
  };
  // Top-k sampling needs only the largest logits: the backend finds them and only those
  // come back (the same draw as from the whole row; Sampler::candidates_needed).
  std::vector<LogitCandidate> top;
  bool from_top = false;
  int32_t next = -1;  // the id forward_greedy() found (on_device, in lock step)
  const auto t_decode = Clock::now();
  for (;;) {
    if (cancelled()) {
      res.stop_reason = "cancelled";
      break;
    }
    if (req.max_tokens == 0) {
      res.stop_reason = "length";
      break;
    }
    const int32_t id = exec_.greedy_in_flight() > 0 ? exec_.take_greedy()
                       : next >= 0                  ? next
                       : from_top                   ? sampler.sample_top(std::move(top))
                                                    : sampler.sample(*logits);
    sampler.accept(id);
    res.tokens.push_back(id);
    if (req.on_token) req.on_token(id);
    if (!req.ignore_eos && tok_.is_eog(id)) {
      res.stop_reason = "eos";
      break;
    }
    if (stops.append(stream.push(id))) {
      res.stop_reason = "stop";
      break;
    }
    emit(stops.take_safe());
    const int64_t produced = static_cast<int64_t>(res.tokens.size());
    if (!may_step(produced)) {
      res.stop_reason = req.max_tokens >= 0 && produced >= req.max_tokens ? "length" : "context";
      break;
    }
    if (on_device && req.greedy_ahead) {
      if (exec_.greedy_in_flight() == 0) exec_.issue_greedy(&id);  // the first step, from the host
      // The step after the one in flight, from the id that one leaves on the device.
      if (may_step(produced + 1)) exec_.issue_greedy(nullptr);
      continue;
    }
    if (on_device) {
      next = exec_.forward_greedy(&id, 1);
      continue;
    }
    const int want_top = host_sampling() ? 0 : sampler.candidates_needed();
    from_top = want_top > 0;
    if (from_top)
      top = exec_.forward_top_k(&id, 1, want_top);
    else
      logits = &exec_.forward(&id, 1);
  }
  exec_.drop_greedy();  // the step after the last token, queued before it was read
  if (res.stop_reason != "stop") stops.append(stream.flush());
  emit(stops.take_rest());
  res.text = stops.text();
  res.stats.generated_tokens = static_cast<int64_t>(res.tokens.size());
  res.stats.decode_seconds = seconds_since(t_decode);
  res.stats.decode_transfer = moved_since(moved1);
  return res;
}

}  // namespace headinfer
