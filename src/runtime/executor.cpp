#include "runtime/executor.hpp"

#include <algorithm>
#include <cmath>

#include "headinfer/error.hpp"
#include "kv/footprint.hpp"

namespace headinfer {
namespace {

enum Buf : size_t { kX, kH, kQkv, kAttn, kGateUp, kTmp, kLast, kNumBufs };

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
      layers_.push_back(Layer{prep(lw.attn_norm), upload_fused(fused_qkv(lw)), upload_fused(fused_qkv_bias(lw)),
                              prep(lw.wo), prep(lw.ffn_norm), upload_fused(fused_gate_up(lw)), prep(lw.w_down)});
    }
    kv_ = std::make_unique<KvStore>(be_, cfg_, opts_.kv_dtype, opts_.schedule, opts.capacity);
    attn_ = std::make_unique<LayerAttention>(be_, *kv_, cfg_, opts_.max_chunk);
    for (int64_t n : activation_floats(cfg_, opts_.max_chunk, opts_.mlp_chunk))
      bufs_.push_back(static_cast<float*>(be_.alloc(static_cast<size_t>(n) * sizeof(float))));
    // The token ids of a forward (the footprint's token_id_slots), kept for its life.
    ids_ = static_cast<int32_t*>(be_.alloc(sizeof(int32_t) * static_cast<size_t>(token_id_slots(opts_.max_chunk))));
    found_ = be_.create_event();
    for (Event& e : copied_) e = be_.create_event();
  } catch (...) {
    release();
    throw;
  }
  logits_.resize(static_cast<size_t>(cfg_.vocab_size));
}

// The parts go straight from the model's (host) tensors into one device matrix, so
// no part is ever prepared on its own: the device holds each weight once.
Mat Executor::upload_fused(const FusedRows& f) {
  void* d = be_.alloc(f.bytes());
  fused_.push_back(d);
  uint8_t* dst = static_cast<uint8_t*>(d);
  std::vector<float> f32;
  for (const Tensor* t : f.parts) {
    HI_CHECK(!t->empty(), "executor: weight " << t->name << " has no data");
    const size_t n = dtype_bytes(f.dtype, t->numel());
    if (t->dtype == f.dtype) {
      be_.upload(dst, t->data, n);
    } else {  // Q8_0, or dtypes that differ within the group: exactly as f32
      f32.resize(static_cast<size_t>(t->numel()));
      to_f32(t->dtype, t->data, f32.data(), t->numel());
      be_.upload(dst, f32.data(), n);
    }
    dst += n;
  }
  Mat m;
  m.dtype = f.dtype;
  m.data = d;
  m.rows = f.rows;
  m.cols = f.cols;
  return m;
}

Mat Executor::upload_fused(const FusedVector& v) {
  if (!v.any) return Mat{};
  std::vector<float> host(static_cast<size_t>(v.length), 0.f);
  size_t off = 0;
  for (size_t i = 0; i < v.parts.size(); ++i) {
    const Tensor& t = *v.parts[i];
    if (!t.shape.empty()) {
      HI_CHECK(!t.empty(), "executor: bias " << t.name << " has no data");
      to_f32(t.dtype, t.data, host.data() + off, t.numel());
    }
    off += static_cast<size_t>(v.lengths[i]);
  }
  void* d = be_.alloc(v.bytes());
  fused_.push_back(d);
  be_.upload(d, host.data(), v.bytes());
  Mat m;
  m.dtype = DType::F32;
  m.data = d;
  m.rows = 1;
  m.cols = v.length;
  return m;
}

void Executor::release() {
  // Steps still in flight write ids_ and host_ids_.
  if (greedy_in_flight() > 0) be_.synchronize();
  for (Event* e : {&found_, &copied_[0], &copied_[1]}) {
    if (*e) be_.destroy_event(*e);
    *e = Event{};
  }
  if (host_ids_) be_.free_host(host_ids_);
  host_ids_ = nullptr;
  attn_.reset();
  kv_.reset();
  for (float* p : bufs_) be_.free(p);
  bufs_.clear();
  for (void* p : fused_) be_.free(p);
  fused_.clear();
  if (ids_) be_.free(ids_);
  ids_ = nullptr;
  keep_alive_.clear();
}

Executor::~Executor() { release(); }

void Executor::run_layer(const Layer& L, int layer, int n, int64_t pos0, const std::vector<double>& inv_freq) {
  const int hd = cfg_.head_dim;
  const int64_t q_w = int64_t{cfg_.n_heads} * hd, kv_w = int64_t{cfg_.n_kv_heads} * hd;
  const int64_t qkv_w = q_w + 2 * kv_w;  // a row of the fused projection: [q | k | v]
  float *x = buf(kX), *h = buf(kH), *qkv = buf(kQkv), *attn = buf(kAttn);

  // Layers after the first get their attention norm from the previous layer's last
  // residual add (norm_rows below). h holds the GEMM inputs in the dtype the backend
  // takes them in (gemm_rows_dtype: f32, or the weights' where it rounds them anyway).
  const DType qkv_rows = be_.gemm_rows_dtype(L.wqkv, n);
  if (layer == 0) be_.norm_rows(x, nullptr, L.attn_norm, cfg_.rms_eps, n, h, qkv_rows);
  // The QKV projection, then Q's heads and K's rotated (one rotation over n_heads +
  // n_kv_heads heads of each row) and the new K/V stored: the attention's first op.
  const QkvProjection proj{h, qkv_rows, &L.wqkv, L.bqkv.empty() ? nullptr : &L.bqkv};
  const RopeArgs rope{qkv, qkv_w, n, cfg_.n_heads + cfg_.n_kv_heads, hd, pos0, inv_freq.data()};
  // The last layer's outputs reach nothing but the logits of the forward's last
  // position: past its K/V (stored for every token), it runs for that row alone.
  const bool last = static_cast<size_t>(layer) + 1 == layers_.size();
  const int rows = last ? 1 : n;
  const int64_t first = n - rows;
  float* x_rows = x + first * cfg_.hidden;
  float* tmp = buf(kTmp) + first * cfg_.hidden;
  // The attention's result may reach the O projection as rows of the KV dtype where the
  // backend takes that dtype anyway; they go to h, free from the QKV GEMM on.
  const DType o_rows = be_.gemm_rows_dtype(L.wo, rows);
  const bool rows_fit =
      o_rows != DType::F32 && o_rows == opts_.kv_dtype && dtype_bytes(o_rows, q_w) <= sizeof(float) * cfg_.hidden;
  const LayerQkv io{qkv, qkv + q_w, qkv + q_w + kv_w, qkv_w, attn, &rope, rows, rows_fit ? h : nullptr, &proj};
  if (attn_->run(layer, io))
    be_.matmul_rows(reinterpret_cast<const uint8_t*>(h) + dtype_bytes(o_rows, first * q_w), o_rows, rows, L.wo, nullptr,
                    tmp);
  else
    be_.matmul(attn + first * q_w, rows, L.wo, nullptr, tmp);
  const DType mlp_rows = be_.mlp_rows_dtype(rows, L.w_gate_up, L.w_down);
  be_.norm_rows(x_rows, tmp, L.ffn_norm, cfg_.rms_eps, rows, h, mlp_rows);
  // The ffn-wide intermediates (gu) exist for mlp_chunk rows at a time; every output
  // row is computed alone, so the passes change no value.
  float* gu = buf(kGateUp);
  const size_t row_bytes = dtype_bytes(mlp_rows, cfg_.hidden);
  for (int r0 = 0; r0 < rows; r0 += opts_.mlp_chunk) {
    const int m = std::min(opts_.mlp_chunk, rows - r0);
    const void* hr = reinterpret_cast<const uint8_t*>(h) + static_cast<size_t>(r0) * row_bytes;
    be_.mlp(hr, mlp_rows, m, L.w_gate_up, L.w_down, gu, tmp + static_cast<int64_t>(r0) * cfg_.hidden);
  }
  if (!last) {
    const Layer& next = layers_[static_cast<size_t>(layer) + 1];
    be_.norm_rows(x, tmp, next.attn_norm, cfg_.rms_eps, n, h, be_.gemm_rows_dtype(next.wqkv, n));
  } else {
    // The last residual add and the output norm of the forward's last row (the logits'
    // input, into h) as one op, as the layers' boundaries are.
    be_.add_rmsnorm(x_rows, tmp, out_norm_, cfg_.rms_eps, rows, h);
  }
}

void Executor::check_token(int32_t id) const {
  HI_CHECK(id >= 0 && id < cfg_.vocab_size,
           "token id " << id << " is outside the vocabulary (0.." << cfg_.vocab_size - 1 << ")");
}

const float* Executor::forward_logits(const int32_t* tokens, int n) {
  HI_CHECK(n > 0 && n <= opts_.max_chunk, "forward: " << n << " tokens, expected 1.." << opts_.max_chunk);
  HI_CHECK(greedy_in_flight() == 0,
           "forward: " << greedy_in_flight() << " greedy steps are still in flight (take or drop them first)");
  for (int i = 0; i < n; ++i) check_token(tokens[i]);
  chain_ = false;  // the upload overwrites the ids a chained step would embed
  be_.upload(ids_, tokens, sizeof(int32_t) * static_cast<size_t>(n));
  return forward_ids(ids_, n);
}

const float* Executor::forward_ids(const int32_t* ids, int n) {
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
  be_.begin_forward(n);
  be_.embed(ids, n, tok_embd_, buf(kX));
  attn_->begin(pos0, n);
  for (size_t l = 0; l < layers_.size(); ++l) run_layer(layers_[l], static_cast<int>(l), n, pos0, inv_freq_);
  attn_->end();
  kv_->set_length(pos0 + n);

  // The last layer left the last row's output norm in kH (every model has a layer).
  be_.matmul(buf(kH), 1, lm_head_, nullptr, buf(kLast));
  return buf(kLast);
}

const std::vector<float>& Executor::forward(const int32_t* tokens, int n) {
  be_.download(logits_.data(), forward_logits(tokens, n), logits_.size() * sizeof(float));
  return logits_;
}

int32_t Executor::forward_greedy(const int32_t* tokens, int n) {
  return be_.argmax(forward_logits(tokens, n), static_cast<int64_t>(logits_.size()));
}

std::vector<LogitCandidate> Executor::forward_top_k(const int32_t* tokens, int n, int k) {
  return be_.top_k(forward_logits(tokens, n), static_cast<int64_t>(logits_.size()), k);
}

}  // namespace headinfer
