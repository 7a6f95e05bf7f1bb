#include "runtime/executor.hpp"

#include <algorithm>
#include <cmath>

#include "headinfer/error.hpp"
#include "kv/footprint.hpp"

namespace headinfer {
namespace {

enum Buf : size_t { kX, kH, kQ, kK, kV, kAttn, kGate, kUp, kTmp, kLast, kNumBufs };

}  // namespace

Executor::Executor(Backend& backend, const LoadedModel& model, const ExecutorOptions& opts)
    : be_(backend), cfg_(model.config), opts_(opts) {
  HI_CHECK(opts.max_chunk > 0, "chunk size must be positive, got " << opts.max_chunk);
  if (opts_.mlp_chunk <= 0) opts_.mlp_chunk = default_mlp_chunk(opts_.max_chunk);
  HI_CHECK(opts_.mlp_chunk <= opts_.max_chunk, "mlp chunk " << opts_.mlp_chunk << " exceeds the chunk size "
                                                             << opts_.max_chunk);
  if (opts_.schedule.homes.empty()) opts_.schedule = KvSchedule::all_resident(cfg_, opts_.kv_dtype);
  try {
    const ModelWeights& w = model.weights;
    auto prep = [&](const Tensor& t) { return t.empty() ? Mat{} : be_.prepare(t, keep_alive_); };
    tok_embd_ = prep(w.tok_embd);
    out_norm_ = prep(w.out_norm);
    // Tied embeddings are one tensor: prepared (and held on the device) once.
    lm_head_ = w.lm_head.data == w.tok_embd.data ? tok_embd_ : prep(w.lm_head);
    for (const LayerWeights& lw : w.layers) {
      layers_.push_back(Layer{prep(lw.attn_norm), prep(lw.wq), prep(lw.wk), prep(lw.wv), prep(lw.wo), prep(lw.bq),
                              prep(lw.bk), prep(lw.bv), prep(lw.ffn_norm), prep(lw.w_gate), prep(lw.w_up),
                              prep(lw.w_down)});
    }
    kv_ = std::make_unique<KvStore>(be_, cfg_, opts_.kv_dtype, opts_.schedule, opts.capacity);
    attn_ = std::make_unique<LayerAttention>(be_, *kv_, cfg_, opts_.max_chunk);
    for (int64_t n : activation_floats(cfg_, opts_.max_chunk, opts_.mlp_chunk))
      bufs_.push_back(static_cast<float*>(be_.alloc(static_cast<size_t>(n) * sizeof(float))));
    // The token ids of a forward (the footprint's 4 * max_chunk bytes), kept for its life.
    ids_ = static_cast<int32_t*>(be_.alloc(sizeof(int32_t) * static_cast<size_t>(opts_.max_chunk)));
  } catch (...) {
    release();
    throw;
  }
  logits_.resize(static_cast<size_t>(cfg_.vocab_size));
}

void Executor::release() {
  attn_.reset();
  kv_.reset();
  for (float* p : bufs_) be_.free(p);
  bufs_.clear();
  if (ids_) be_.free(ids_);
  ids_ = nullptr;
  keep_alive_.clear();
}

Executor::~Executor() { release(); }

void Executor::run_layer(const Layer& L, int layer, int n, int64_t pos0, const std::vector<double>& inv_freq) {
  const int hd = cfg_.head_dim;
  const int q_w = cfg_.n_heads * hd, kv_w = cfg_.n_kv_heads * hd;
  float *x = buf(kX), *h = buf(kH), *q = buf(kQ), *k = buf(kK), *v = buf(kV), *attn = buf(kAttn);

  be_.rmsnorm(x, L.attn_norm, cfg_.rms_eps, n, h);
  be_.matmul(h, n, L.wq, L.bq.empty() ? nullptr : &L.bq, q);
  be_.matmul(h, n, L.wk, L.bk.empty() ? nullptr : &L.bk, k);
  be_.matmul(h, n, L.wv, L.bv.empty() ? nullptr : &L.bv, v);
  be_.rope(RopeArgs{q, q_w, n, cfg_.n_heads, hd, pos0, inv_freq.data()});
  be_.rope(RopeArgs{k, kv_w, n, cfg_.n_kv_heads, hd, pos0, inv_freq.data()});

  attn_->run(layer, LayerQkv{q, k, v, attn});

  be_.matmul(attn, n, L.wo, nullptr, buf(kTmp));
  be_.add(x, buf(kTmp), static_cast<int64_t>(n) * cfg_.hidden);
  be_.rmsnorm(x, L.ffn_norm, cfg_.rms_eps, n, h);
  // The ffn-wide intermediates exist for mlp_chunk rows at a time; every output
  // row is computed alone, so the passes change no value.
  for (int r0 = 0; r0 < n; r0 += opts_.mlp_chunk) {
    const int m = std::min(opts_.mlp_chunk, n - r0);
    const float* hr = h + static_cast<int64_t>(r0) * cfg_.hidden;
    be_.matmul(hr, m, L.w_gate, nullptr, buf(kGate));
    be_.matmul(hr, m, L.w_up, nullptr, buf(kUp));
    be_.swiglu(buf(kGate), buf(kUp), static_cast<int64_t>(m) * cfg_.ffn_hidden, buf(kGate));
    be_.matmul(buf(kGate), m, L.w_down, nullptr, buf(kTmp) + static_cast<int64_t>(r0) * cfg_.hidden);
  }
  be_.add(x, buf(kTmp), static_cast<int64_t>(n) * cfg_.hidden);
}

const std::vector<float>& Executor::forward(const int32_t* tokens, int n) {
  HI_CHECK(n > 0 && n <= opts_.max_chunk, "forward: " << n << " tokens, expected 1.." << opts_.max_chunk);
  const int64_t pos0 = kv_->length();
  HI_CHECK(pos0 + n <= kv_->capacity(), "context full: " << pos0 + n << " tokens exceed the KV capacity of "
                                                          << kv_->capacity() << " (--max-context)");
  // Only dynamic NTK scaling depends on the length; HF grows its table and never
  // shrinks it within a sequence, so neither do we.
  const int64_t seq = std::max<int64_t>(pos0 + n, cfg_.max_position);
  if (inv_freq_len_ < 0 || (cfg_.rope_scaling.type == RopeScaling::Type::Dynamic && seq > inv_freq_len_)) {
    inv_freq_ = rope_inv_freq(cfg_, pos0 + n);
    inv_freq_len_ = seq;
  }
  for (int i = 0; i < n; ++i)
    HI_CHECK(tokens[i] >= 0 && tokens[i] < cfg_.vocab_size,
             "token id " << tokens[i] << " is outside the vocabulary (0.." << cfg_.vocab_size - 1 << ")");
  be_.upload(ids_, tokens, sizeof(int32_t) * static_cast<size_t>(n));
  be_.embed(ids_, n, tok_embd_, buf(kX));
  attn_->begin(pos0, n);
  for (size_t l = 0; l < layers_.size(); ++l) run_layer(layers_[l], static_cast<int>(l), n, pos0, inv_freq_);
  attn_->end();
  kv_->set_length(pos0 + n);

  const float* last = buf(kX) + static_cast<int64_t>(n - 1) * cfg_.hidden;
  be_.rmsnorm(last, out_norm_, cfg_.rms_eps, 1, buf(kH));
  be_.matmul(buf(kH), 1, lm_head_, nullptr, buf(kLast));
  be_.download(logits_.data(), buf(kLast), logits_.size() * sizeof(float));
  return logits_;
}

}  // namespace headinfer
