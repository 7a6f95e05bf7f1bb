// A Backend that wraps another and, when enabled, times each compute op by phase
// (gemm, attention, other) without any change to the code that drives it.
//
// Every virtual is forwarded, the offloading ones included, so an Executor on the
// wrapper behaves exactly as on the inner backend (same bits, same streams). While
// enabled, each compute op's time is charged to its phase and to its name:
// - on a backend with timing events (CUDA), the device time between two timestamps
//   recorded on the compute stream around the op's launches. Nothing waits, so the
//   run keeps its overlap and its pace (a timestamp costs about a microsecond); the
//   times are read back when profiling is switched off. What lies between ops (a
//   wait for a copy, the host falling behind) stays unattributed.
// - otherwise (the CPU backend, whose ops return when done), the wall time of the
//   op, after waiting for the compute stream before and after it.
//
// Always, enabled or not, it also sums the host's time blocked on the device
// (upload, download, synchronize, sync: two clock reads a call). A decode step that spends
// little of its time there is bound by the host issuing launches, not by the device.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "backend/forwarding_backend.hpp"

namespace headinfer {

enum class Phase : int { Gemm = 0, Attention = 1, Other = 2 };
constexpr int kPhaseCount = 3;
const char* phase_name(Phase p);

struct PhaseTimes {
  std::array<double, kPhaseCount> seconds{};
  std::array<int64_t, kPhaseCount> calls{};
  double of(Phase p) const { return seconds[static_cast<size_t>(p)]; }
  int64_t calls_of(Phase p) const { return calls[static_cast<size_t>(p)]; }
  double total() const { return seconds[0] + seconds[1] + seconds[2]; }
};

struct OpTime {
  double seconds = 0;
  int64_t calls = 0;
};

class ProfilingBackend final : public ForwardingBackend {
 public:
  // `inner` must outlive the wrapper. Profiling starts disabled.
  explicit ProfilingBackend(Backend& inner);
  ~ProfilingBackend() override;

  Backend& inner() { return inner_; }
  // Enabling starts a profiled span; once disabled, times() and op_times() hold the
  // ops since the last reset().
  void set_enabled(bool on);
  bool enabled() const { return enabled_; }
  void reset();
  const PhaseTimes& times() const { return times_; }
  // Per op name ("matmul", "rope", ...), the same time split finer.
  const std::map<std::string, OpTime>& op_times() const { return ops_; }
  // Whether the times are device timestamps (else synchronised wall time).
  bool device_timed() const { return device_timed_; }
  // Seconds the host has waited in upload / download / synchronize / sync since construction.
  double wait_seconds() const { return wait_seconds_; }

  void upload(void* dst, const void* src, size_t bytes) override {
    waited([&] { inner_.upload(dst, src, bytes); });
  }
  void download(void* dst, const void* src, size_t bytes) override {
    waited([&] { inner_.download(dst, src, bytes); });
  }

  void embed(const int32_t* ids, int n, const Mat& table, float* out) override;
  void rmsnorm(const float* x, const Mat& w, float eps, int n, float* out) override;
  void matmul(const float* x, int n, const Mat& w, const Mat* bias, float* out) override;
  void matmul_strided(const float* x, int64_t x_stride, int n, const Mat& w, const Mat* bias, float* out) override;
  void matmul_swiglu(const float* x, int n, const Mat& w_gate_up, float* gu) override;
  void norm_rows(float* x, const float* y, const Mat& w, float eps, int n, void* out, DType out_dtype) override;
  void matmul_rows(const void* x, DType x_dtype, int n, const Mat& w, const Mat* bias, float* out) override;
  void mlp(const void* x, DType x_dtype, int n, const Mat& w_gate_up, const Mat& w_down, float* gu,
           float* out) override;
  void rope(const RopeArgs& a) override;
  void attention(const AttnArgs& a) override;
  void merge_attention(float* o_a, float* lse_a, const float* o_b, const float* lse_b, int n_q, int n_qh,
                       int head_dim, int64_t stride_a, int64_t stride_b) override;
  void swiglu(const float* gate, const float* up, int rows, int64_t cols, int64_t in_stride, float* out,
              int64_t out_stride) override;
  void add(float* x, const float* y, int64_t n) override;
  void add_rmsnorm(float* x, const float* y, const Mat& w, float eps, int n, float* out) override;
  void combine_attention(const float* part_o, const float* part_lse, int n_slots, int n_q, int n_qh, int head_dim,
                         float* out, int64_t out_stride, float* lse) override;
  void store_kv(const float* src, int64_t src_stride, int n, int head_dim, DType kv_dtype, void* dst) override;
  void store_kv_heads(const float* k, const float* v, int64_t src_stride, int n, int n_heads, int head_dim,
                      DType kv_dtype, void* const* dst_k, void* const* dst_v) override;
  void rope_store_kv_heads(const RopeArgs& r, const float* k, const float* v, int64_t src_stride, int n, int n_heads,
                           int head_dim, DType kv_dtype, void* const* dst_k, void* const* dst_v) override;
  void matmul_rope_store_kv(const void* x, DType x_dtype, int n, const Mat& w, const Mat* bias, const RopeArgs& r,
                            int n_kv_heads, DType kv_dtype, void* const* dst_k, void* const* dst_v) override;
  int32_t argmax(const float* x, int64_t n) override;
  void argmax_to(const float* x, int64_t n, int32_t* dst) override;
  std::vector<LogitCandidate> top_k(const float* x, int64_t n, int k) override;
  void synchronize() override {
    waited([&] { inner_.synchronize(); });
  }

  void sync(Event e) override {
    waited([&] { inner_.sync(e); });
  }

 private:
  // Runs `op` and, when enabled, charges its compute-stream time to `phase` and `name`
  // (for a matmul, `name` and the weight's shape: built only while profiling).
  template <class Op>
  void timed(Phase phase, const char* name, Op&& op, const Mat* weight = nullptr);
  void wait_compute();
  void charge(Phase phase, const std::string& name, double seconds);
  Event timing_event();
  void resolve();  // reads the pending timestamps back into times_ and ops_
  template <class Op>
  void waited(Op&& op) {
    const auto t0 = std::chrono::steady_clock::now();
    op();
    wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }

  bool enabled_ = false;
  Event compute_done_;  // created on first use, on the inner backend
  bool device_timed_ = false;
  struct Pending {
    Phase phase;
    std::string name;
    Event start, end;
  };
  std::vector<Pending> pending_;
  std::vector<Event> free_events_, all_events_;
  PhaseTimes times_;
  std::map<std::string, OpTime> ops_;
  double wait_seconds_ = 0;
};

}  // namespace headinfer
