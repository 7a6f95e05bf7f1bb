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

ProfilingBackend::ProfilingBackend(Backend& inner) : inner_(inner) {}

ProfilingBackend::~ProfilingBackend() {
  if (compute_done_) inner_.destroy_event(compute_done_);
}

void ProfilingBackend::set_enabled(bool on) {
  if (on && !compute_done_) compute_done_ = inner_.create_event();
  enabled_ = on;
}

void ProfilingBackend::wait_compute() {
  // Only the compute stream: copies in flight keep overlapping the timed op.
  inner_.record(compute_done_, Stream::Compute);
  inner_.sync(compute_done_);
}

template <class Op>
void ProfilingBackend::timed(Phase phase, Op&& op) {
  if (!enabled_) return op();
  wait_compute();  // work queued earlier is not this op's
  const auto t0 = std::chrono::steady_clock::now();
  op();
  wait_compute();
  const auto i = static_cast<size_t>(phase);
  times_.seconds[i] += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ++times_.calls[i];
}

void ProfilingBackend::embed(const int32_t* ids, int n, const Mat& table, float* out) {
  timed(Phase::Other, [&] { inner_.embed(ids, n, table, out); });
}

void ProfilingBackend::rmsnorm(const float* x, const Mat& w, float eps, int n, float* out) {
  timed(Phase::Other, [&] { inner_.rmsnorm(x, w, eps, n, out); });
}

void ProfilingBackend::add_rmsnorm(float* x, const float* y, const Mat& w, float eps, int n, float* out) {
  timed(Phase::Other, [&] { inner_.add_rmsnorm(x, y, w, eps, n, out); });
}

void ProfilingBackend::matmul(const float* x, int n, const Mat& w, const Mat* bias, float* out) {
  timed(Phase::Gemm, [&] { inner_.matmul(x, n, w, bias, out); });
}

void ProfilingBackend::rope(const RopeArgs& a) {
  timed(Phase::Other, [&] { inner_.rope(a); });
}

void ProfilingBackend::attention(const AttnArgs& a) {
  timed(Phase::Attention, [&] { inner_.attention(a); });
}

void ProfilingBackend::merge_attention(float* o_a, float* lse_a, const float* o_b, const float* lse_b, int n_q,
                                       int n_qh, int head_dim, int64_t stride_a, int64_t stride_b) {
  timed(Phase::Attention,
        [&] { inner_.merge_attention(o_a, lse_a, o_b, lse_b, n_q, n_qh, head_dim, stride_a, stride_b); });
}

void ProfilingBackend::matmul_strided(const float* x, int64_t x_stride, int n, const Mat& w, const Mat* bias,
                                      float* out) {
  timed(Phase::Gemm, [&] { inner_.matmul_strided(x, x_stride, n, w, bias, out); });
}

void ProfilingBackend::combine_attention(const float* part_o, const float* part_lse, int n_slots, int n_q, int n_qh,
                                         int head_dim, float* out, int64_t out_stride, float* lse) {
  timed(Phase::Attention,
        [&] { inner_.combine_attention(part_o, part_lse, n_slots, n_q, n_qh, head_dim, out, out_stride, lse); });
}

void ProfilingBackend::store_kv_heads(const float* k, const float* v, int64_t src_stride, int n, int n_heads,
                                      int head_dim, DType kv_dtype, void* const* dst_k, void* const* dst_v) {
  timed(Phase::Attention,
        [&] { inner_.store_kv_heads(k, v, src_stride, n, n_heads, head_dim, kv_dtype, dst_k, dst_v); });
}

void ProfilingBackend::swiglu(const float* gate, const float* up, int rows, int64_t cols, int64_t in_stride,
                              float* out, int64_t out_stride) {
  timed(Phase::Other, [&] { inner_.swiglu(gate, up, rows, cols, in_stride, out, out_stride); });
}

void ProfilingBackend::add(float* x, const float* y, int64_t n) {
  timed(Phase::Other, [&] { inner_.add(x, y, n); });
}

void ProfilingBackend::store_kv(const float* src, int64_t src_stride, int n, int head_dim, DType kv_dtype,
                                void* dst) {
  timed(Phase::Attention, [&] { inner_.store_kv(src, src_stride, n, head_dim, kv_dtype, dst); });
}

}  // namespace headinfer
