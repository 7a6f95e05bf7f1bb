// A Backend that forwards every virtual to another one. Wrappers derive from it and
// override only what they change (ProfilingBackend; the tests' backends that drop or
// watch calls), so a new Backend virtual is forwarded here once.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "backend/backend.hpp"

namespace headinfer {

class ForwardingBackend : public Backend {
 public:
  explicit ForwardingBackend(Backend& inner) : inner_(inner) {}
  // The inner backend's name: plans, speed tables and link caches key on it.
  std::string name() const override { return inner_.name(); }
  void* alloc(size_t n) override { return inner_.alloc(n); }
  void free(void* p) override { inner_.free(p); }
  void upload(void* d, const void* s, size_t n) override { inner_.upload(d, s, n); }
  void download(void* d, const void* s, size_t n) override { inner_.download(d, s, n); }
  void copy(void* d, const void* s, size_t n) override { inner_.copy(d, s, n); }
  Mat prepare(const Tensor& t, std::vector<std::shared_ptr<const void>>& k) override { return inner_.prepare(t, k); }
  void embed(const int32_t* ids, int n, const Mat& t, float* out) override { inner_.embed(ids, n, t, out); }
  void rmsnorm(const float* x, const Mat& w, float eps, int n, float* out) override {
    inner_.rmsnorm(x, w, eps, n, out);
  }
  void matmul(const float* x, int n, const Mat& w, const Mat* bias, float* out) override {
    inner_.matmul(x, n, w, bias, out);
  }
  void begin_forward(int n) override { inner_.begin_forward(n); }
  void matmul_strided(const float* x, int64_t xs, int n, const Mat& w, const Mat* bias, float* out) override {
    inner_.matmul_strided(x, xs, n, w, bias, out);
  }
  void rope(const RopeArgs& a) override { inner_.rope(a); }
  void attention(const AttnArgs& a) override { inner_.attention(a); }
  void merge_attention(float* oa, float* la, const float* ob, const float* lb, int nq, int nqh, int hd, int64_t sa,
                       int64_t sb) override {
    inner_.merge_attention(oa, la, ob, lb, nq, nqh, hd, sa, sb);
  }
  void combine_attention(const float* po, const float* pl, int ns, int nq, int nqh, int hd, float* out, int64_t os,
                         float* lse) override {
    inner_.combine_attention(po, pl, ns, nq, nqh, hd, out, os, lse);
  }
  void swiglu(const float* g, const float* u, int rows, int64_t cols, int64_t is, float* out, int64_t os) override {
    inner_.swiglu(g, u, rows, cols, is, out, os);
  }
  void matmul_swiglu(const float* x, int n, const Mat& w, float* gu) override { inner_.matmul_swiglu(x, n, w, gu); }
  DType gemm_rows_dtype(const Mat& w, int n) const override { return inner_.gemm_rows_dtype(w, n); }
  void norm_rows(float* x, const float* y, const Mat& w, float eps, int n, void* out, DType dt) override {
    inner_.norm_rows(x, y, w, eps, n, out, dt);
  }
  void matmul_rows(const void* x, DType dt, int n, const Mat& w, const Mat* bias, float* out) override {
    inner_.matmul_rows(x, dt, n, w, bias, out);
  }
  void mlp(const void* x, DType dt, int n, const Mat& wgu, const Mat& wd, float* gu, float* out) override {
    inner_.mlp(x, dt, n, wgu, wd, gu, out);
  }
  DType mlp_rows_dtype(int n, const Mat& wgu, const Mat& wd) const override {
    return inner_.mlp_rows_dtype(n, wgu, wd);
  }
  void add(float* x, const float* y, int64_t n) override { inner_.add(x, y, n); }
  void add_rmsnorm(float* x, const float* y, const Mat& w, float eps, int n, float* out) override {
    inner_.add_rmsnorm(x, y, w, eps, n, out);
  }
  void store_kv(const float* s, int64_t st, int n, int hd, DType dt, void* d) override {
    inner_.store_kv(s, st, n, hd, dt, d);
  }
  void store_kv_heads(const float* k, const float* v, int64_t st, int n, int nh, int hd, DType dt, void* const* dk,
                      void* const* dv) override {
    inner_.store_kv_heads(k, v, st, n, nh, hd, dt, dk, dv);
  }
  void rope_store_kv_heads(const RopeArgs& r, const float* k, const float* v, int64_t st, int n, int nh, int hd,
                           DType dt, void* const* dk, void* const* dv) override {
    inner_.rope_store_kv_heads(r, k, v, st, n, nh, hd, dt, dk, dv);
  }
  void matmul_rope_store_kv(const void* x, DType xdt, int n, const Mat& w, const Mat* b, const RopeArgs& r, int nkv,
                            DType dt, void* const* dk, void* const* dv) override {
    inner_.matmul_rope_store_kv(x, xdt, n, w, b, r, nkv, dt, dk, dv);
  }
  int32_t argmax(const float* x, int64_t n) override { return inner_.argmax(x, n); }
  void argmax_to(const float* x, int64_t n, int32_t* dst) override { inner_.argmax_to(x, n, dst); }
  std::vector<LogitCandidate> top_k(const float* x, int64_t n, int k) override { return inner_.top_k(x, n, k); }
  void synchronize() override { inner_.synchronize(); }
  void* alloc_host(size_t n) override { return inner_.alloc_host(n); }
  void free_host(void* p) override { inner_.free_host(p); }
  Event create_event() override { return inner_.create_event(); }
  void destroy_event(Event e) override { inner_.destroy_event(e); }
  Event create_timing_event() override { return inner_.create_timing_event(); }
  double elapsed_seconds(Event from, Event to) override { return inner_.elapsed_seconds(from, to); }
  void record(Event e, Stream s) override { inner_.record(e, s); }
  void wait(Stream s, Event e) override { inner_.wait(s, e); }
  void sync(Event e) override { inner_.sync(e); }
  void copy_h2d_async(void* d, const void* s, size_t n) override { inner_.copy_h2d_async(d, s, n); }
  void copy_d2h_async(void* d, const void* s, size_t n) override { inner_.copy_d2h_async(d, s, n); }
  void copy_h2d_2d_async(void* d, size_t dp, const void* s, size_t sp, size_t w, size_t r) override {
    inner_.copy_h2d_2d_async(d, dp, s, sp, w, r);
  }
  void copy_d2h_2d_async(void* d, size_t dp, const void* s, size_t sp, size_t w, size_t r) override {
    inner_.copy_d2h_2d_async(d, dp, s, sp, w, r);
  }
  void set_device_limit(int64_t bytes) override { inner_.set_device_limit(bytes); }
  DeviceMemoryInfo device_memory() const override { return inner_.device_memory(); }
  void reset_device_peak() override { inner_.reset_device_peak(); }

 protected:
  Backend& inner_;
};

}  // namespace headinfer
