#include "backend/profiling_backend.hpp"

namespace headinfer {

const char* phase_name(Phase p) {
  switch (p) {
    case Phase::Gemm: return "gemm";
    case Phase::Attention: return "attention";
    case Phase::Other: return "other";
  }
  return "?";
}

namespace {

// A matmul is named by its weight's shape, so each projection shows on its own.
std::string op_name(const char* name, const Mat* w) {
  return w ? std::string(name) + " " + std::to_string(w->rows) + "x" + std::to_string(w->cols) : std::string(name);
}

}  // namespace

ProfilingBackend::ProfilingBackend(Backend& inner) : ForwardingBackend(inner) {}

ProfilingBackend::~ProfilingBackend() {
  if (compute_done_) inner_.destroy_event(compute_done_);
  for (Event e : all_events_) inner_.destroy_event(e);
}

void ProfilingBackend::set_enabled(bool on) {
  if (on && !compute_done_) {
    compute_done_ = inner_.create_event();
    const Event probe = inner_.create_timing_event();
    device_timed_ = static_cast<bool>(probe);
    if (probe) {
      all_events_.push_back(probe);
      free_events_.push_back(probe);
    }
  }
  if (!on) resolve();
  enabled_ = on;
}

void ProfilingBackend::reset() {
  resolve();
  times_ = {};
  ops_.clear();
}

void ProfilingBackend::wait_compute() {
  // Only the compute stream: copies in flight keep overlapping the timed op.
  inner_.record(compute_done_, Stream::Compute);
  inner_.sync(compute_done_);
}

void ProfilingBackend::charge(Phase phase, const std::string& name, double seconds) {
  const auto i = static_cast<size_t>(phase);
  times_.seconds[i] += seconds;
  ++times_.calls[i];
  OpTime& o = ops_[name];
  o.seconds += seconds;
  ++o.calls;
}

Event ProfilingBackend::timing_event() {
  // Read back in bulk rather than holding an unbounded number of events: a long
  // profiled prefill issues tens of thousands of ops.
  if (free_events_.empty() && pending_.size() >= 4096) resolve();
  if (free_events_.empty()) {
    all_events_.push_back(inner_.create_timing_event());
    return all_events_.back();
  }
  const Event e = free_events_.back();
  free_events_.pop_back();
  return e;
}

void ProfilingBackend::resolve() {
  for (const Pending& p : pending_) {
    charge(p.phase, p.name, inner_.elapsed_seconds(p.start, p.end));
    free_events_.push_back(p.start);
    free_events_.push_back(p.end);
  }
  pending_.clear();
}

template <class Op>
void ProfilingBackend::timed(Phase phase, const char* name, Op&& op, const Mat* weight) {
  if (!enabled_) return op();
  if (device_timed_) {
    const Event start = timing_event(), end = timing_event();
    inner_.record(start, Stream::Compute);
    op();
    inner_.record(end, Stream::Compute);
    pending_.push_back(Pending{phase, op_name(name, weight), start, end});
    return;
  }
  wait_compute();  // work queued earlier is not this op's
  const auto t0 = std::chrono::steady_clock::now();
  op();
  wait_compute();
  charge(phase, op_name(name, weight), std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
}

void ProfilingBackend::embed(const int32_t* ids, int n, const Mat& table, float* out) {
  timed(Phase::Other, "embed", [&] { inner_.embed(ids, n, table, out); });
}

void ProfilingBackend::rmsnorm(const float* x, const Mat& w, float eps, int n, float* out) {
  timed(Phase::Other, "rmsnorm", [&] { inner_.rmsnorm(x, w, eps, n, out); });
}

void ProfilingBackend::add_rmsnorm(float* x, const float* y, const Mat& w, float eps, int n, float* out) {
  timed(Phase::Other, "add_rmsnorm", [&] { inner_.add_rmsnorm(x, y, w, eps, n, out); });
}

void ProfilingBackend::matmul(const float* x, int n, const Mat& w, const Mat* bias, float* out) {
  timed(Phase::Gemm, "matmul", [&] { inner_.matmul(x, n, w, bias, out); }, &w);
}

void ProfilingBackend::rope(const RopeArgs& a) {
  timed(Phase::Other, "rope", [&] { inner_.rope(a); });
}

void ProfilingBackend::attention(const AttnArgs& a) {
  timed(Phase::Attention, "attention", [&] { inner_.attention(a); });
}

void ProfilingBackend::merge_attention(float* o_a, float* lse_a, const float* o_b, const float* lse_b, int n_q,
                                       int n_qh, int head_dim, int64_t stride_a, int64_t stride_b) {
  timed(Phase::Attention, "merge_attention",
        [&] { inner_.merge_attention(o_a, lse_a, o_b, lse_b, n_q, n_qh, head_dim, stride_a, stride_b); });
}

void ProfilingBackend::matmul_strided(const float* x, int64_t x_stride, int n, const Mat& w, const Mat* bias,
                                      float* out) {
  timed(Phase::Gemm, "matmul", [&] { inner_.matmul_strided(x, x_stride, n, w, bias, out); }, &w);
}

// Timed as one op: on a backend that fuses it, matmul and swiglu cannot be told apart.
void ProfilingBackend::matmul_swiglu(const float* x, int n, const Mat& w_gate_up, float* gu) {
  timed(Phase::Gemm, "matmul_swiglu", [&] { inner_.matmul_swiglu(x, n, w_gate_up, gu); }, &w_gate_up);
}

// Under the names of the ops they stand for (F32 rows run exactly those).
void ProfilingBackend::norm_rows(float* x, const float* y, const Mat& w, float eps, int n, void* out, DType out_dtype) {
  timed(Phase::Other, y ? "add_rmsnorm" : "rmsnorm", [&] { inner_.norm_rows(x, y, w, eps, n, out, out_dtype); });
}

void ProfilingBackend::matmul_rows(const void* x, DType x_dtype, int n, const Mat& w, const Mat* bias, float* out) {
  timed(
      Phase::Gemm, "matmul", [&] { inner_.matmul_rows(x, x_dtype, n, w, bias, out); }, &w);
}

// One op where the inner backend runs the MLP its own way; otherwise its two ops, each
// timed (Backend::mlp calls them on this wrapper).
void ProfilingBackend::mlp(const void* x, DType x_dtype, int n, const Mat& w_gate_up, const Mat& w_down, float* gu,
                           float* out) {
  if (inner_.mlp_rows_dtype(n, w_gate_up, w_down) != DType::F32)
    timed(
        Phase::Gemm, "mlp", [&] { inner_.mlp(x, x_dtype, n, w_gate_up, w_down, gu, out); }, &w_gate_up);
  else
    Backend::mlp(x, x_dtype, n, w_gate_up, w_down, gu, out);
}

void ProfilingBackend::combine_attention(const float* part_o, const float* part_lse, int n_slots, int n_q, int n_qh,
                                         int head_dim, float* out, int64_t out_stride, float* lse) {
  timed(Phase::Attention, "combine_attention",
        [&] { inner_.combine_attention(part_o, part_lse, n_slots, n_q, n_qh, head_dim, out, out_stride, lse); });
}

void ProfilingBackend::store_kv_heads(const float* k, const float* v, int64_t src_stride, int n, int n_heads,
                                      int head_dim, DType kv_dtype, void* const* dst_k, void* const* dst_v) {
  timed(Phase::Attention, "store_kv_heads",
        [&] { inner_.store_kv_heads(k, v, src_stride, n, n_heads, head_dim, kv_dtype, dst_k, dst_v); });
}

void ProfilingBackend::rope_store_kv_heads(const RopeArgs& r, const float* k, const float* v, int64_t src_stride, int n,
                                           int n_heads, int head_dim, DType kv_dtype, void* const* dst_k,
                                           void* const* dst_v) {
  timed(Phase::Other, "rope_store_kv_heads",
        [&] { inner_.rope_store_kv_heads(r, k, v, src_stride, n, n_heads, head_dim, kv_dtype, dst_k, dst_v); });
}

// A GEMM with a little elementwise work after it (one kernel on a GPU for a decode token).
void ProfilingBackend::matmul_rope_store_kv(const void* x, DType x_dtype, int n, const Mat& w, const Mat* bias,
                                            const RopeArgs& r, int n_kv_heads, DType kv_dtype, void* const* dst_k,
                                            void* const* dst_v) {
  timed(
      Phase::Gemm, "matmul_rope_store_kv",
      [&] { inner_.matmul_rope_store_kv(x, x_dtype, n, w, bias, r, n_kv_heads, kv_dtype, dst_k, dst_v); }, &w);
}

int32_t ProfilingBackend::argmax(const float* x, int64_t n) {
  // It returns once the index is on the host: that wait counts as the host's, as a download's.
  int32_t r = 0;
  waited([&] { timed(Phase::Other, "argmax", [&] { r = inner_.argmax(x, n); }); });
  return r;
}

void ProfilingBackend::argmax_to(const float* x, int64_t n, int32_t* dst) {
  timed(Phase::Other, "argmax", [&] { inner_.argmax_to(x, n, dst); });
}

std::vector<LogitCandidate> ProfilingBackend::top_k(const float* x, int64_t n, int k) {
  std::vector<LogitCandidate> r;
  waited([&] { timed(Phase::Other, "top_k", [&] { r = inner_.top_k(x, n, k); }); });
  return r;
}

void ProfilingBackend::swiglu(const float* gate, const float* up, int rows, int64_t cols, int64_t in_stride,
                              float* out, int64_t out_stride) {
  timed(Phase::Other, "swiglu", [&] { inner_.swiglu(gate, up, rows, cols, in_stride, out, out_stride); });
}

void ProfilingBackend::add(float* x, const float* y, int64_t n) {
  timed(Phase::Other, "add", [&] { inner_.add(x, y, n); });
}

void ProfilingBackend::store_kv(const float* src, int64_t src_stride, int n, int head_dim, DType kv_dtype,
                                void* dst) {
  timed(Phase::Attention, "store_kv", [&] { inner_.store_kv(src, src_stride, n, head_dim, kv_dtype, dst); });
}

}  // namespace headinfer
