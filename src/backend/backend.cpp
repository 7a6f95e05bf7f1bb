// Default methods of Backend: the offloading ones, correct for a backend whose copies
// run in compute order (no copy engines) and the reference for what overrides must
// do, and argmax by reading the values back.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "backend/backend.hpp"
#include "headinfer/error.hpp"

namespace headinfer {

const char* stream_name(Stream s) {
  switch (s) {
    case Stream::Compute: return "compute";
    case Stream::H2D: return "h2d";
    case Stream::D2H: return "d2h";
  }
  return "?";
}

void* Backend::alloc_host(size_t bytes) {
  void* p = std::aligned_alloc(4096, (std::max<size_t>(bytes, 1) + 4095) / 4096 * 4096);
  HI_CHECK(p != nullptr, name() << ": out of host memory allocating " << bytes << " bytes for the KV host pool");
  return p;
}

void Backend::free_host(void* p) { std::free(p); }

void Backend::norm_rows(float* x, const float* y, const Mat& w, float eps, int n, void* out, DType out_dtype) {
  HI_CHECK(out_dtype == DType::F32, name() << " norm_rows: rows of " << dtype_name(out_dtype) << ", expected F32");
  if (y)
    add_rmsnorm(x, y, w, eps, n, static_cast<float*>(out));
  else
    rmsnorm(x, w, eps, n, static_cast<float*>(out));
}

void Backend::matmul_rows(const void* x, DType x_dtype, int n, const Mat& w, const Mat* bias, float* out) {
  HI_CHECK(x_dtype == DType::F32, name() << " matmul_rows: rows of " << dtype_name(x_dtype) << ", expected F32");
  matmul(static_cast<const float*>(x), n, w, bias, out);
}

void Backend::mlp(const void* x, DType x_dtype, int n, const Mat& w_gate_up, const Mat& w_down, float* gu, float* out) {
  HI_CHECK(x_dtype == DType::F32, name() << " mlp: rows of " << dtype_name(x_dtype) << ", expected F32");
  matmul_swiglu(static_cast<const float*>(x), n, w_gate_up, gu);
  matmul_strided(gu, w_gate_up.rows, n, w_down, nullptr, out);
}

void Backend::matmul_rope_store_kv(const void* x, DType x_dtype, int n, const Mat& w, const Mat* bias,
                                   const RopeArgs& r, int n_kv_heads, DType kv_dtype, void* const* dst_k,
                                   void* const* dst_v) {
  HI_CHECK(r.stride == w.rows && r.n_tokens == n && r.n_heads >= n_kv_heads &&
               w.rows == static_cast<int64_t>(r.n_heads + n_kv_heads) * r.head_dim,
           name() << " matmul_rope_store_kv: rows of " << r.stride << " floats of " << r.n_heads << " rotated and "
                  << n_kv_heads << " V heads of " << r.head_dim << " for a projection of " << w.rows
                  << " rows, expected [q | k | v] rows of w.rows floats");
  matmul_rows(x, x_dtype, n, w, bias, r.x);
  const int64_t hd = r.head_dim;
  const float* k = r.x + (r.n_heads - n_kv_heads) * hd;
  rope_store_kv_heads(r, k, k + n_kv_heads * hd, r.stride, n, n_kv_heads, r.head_dim, kv_dtype, dst_k, dst_v);
}

int32_t Backend::argmax(const float* x, int64_t n) {
  HI_CHECK(n > 0, name() << " argmax: " << n << " values");
  std::vector<float> v(static_cast<size_t>(n));
  download(v.data(), x, v.size() * sizeof(float));
  return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

void Backend::argmax_to(const float* x, int64_t n, int32_t* dst) {
  const int32_t r = argmax(x, n);
  upload(dst, &r, sizeof r);
}

std::vector<LogitCandidate> Backend::top_k(const float* x, int64_t n, int k) {
  HI_CHECK(n > 0 && k >= 1 && k <= kMaxTopK, name() << " top_k: k " << k << " of " << n << " values (1 to " << kMaxTopK
                                                    << ")");
  std::vector<float> v(static_cast<size_t>(n));
  download(v.data(), x, v.size() * sizeof(float));
  return largest_logits(v.data(), v.size(), static_cast<size_t>(k));
}

std::vector<LogitCandidate> largest_logits(const float* x, size_t n, size_t k) {
  std::vector<LogitCandidate> c(n);
  for (size_t i = 0; i < n; ++i) c[i] = {static_cast<int32_t>(i), x[i]};
  const size_t keep = std::min(n, k);
  std::partial_sort(c.begin(), c.begin() + static_cast<std::ptrdiff_t>(keep), c.end(), logit_order);
  c.resize(keep);
  return c;
}

void Backend::copy_h2d_2d_async(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width,
                                size_t rows) {
  if (width == dst_pitch && width == src_pitch) return copy_h2d_async(dst, src, width * rows);
  for (size_t r = 0; r < rows; ++r)
    copy_h2d_async(static_cast<uint8_t*>(dst) + r * dst_pitch, static_cast<const uint8_t*>(src) + r * src_pitch,
                   width);
}

void Backend::copy_d2h_2d_async(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width,
                                size_t rows) {
  if (width == dst_pitch && width == src_pitch) return copy_d2h_async(dst, src, width * rows);
  for (size_t r = 0; r < rows; ++r)
    copy_d2h_async(static_cast<uint8_t*>(dst) + r * dst_pitch, static_cast<const uint8_t*>(src) + r * src_pitch,
                   width);
}

void Backend::set_device_limit(int64_t bytes) {
  // Refusing is the only correct fallback: a budget nobody enforces is a promise
  // the engine cannot keep (invariant 4).
  HI_CHECK(bytes < 0, "--gpu-memory: backend " << name() << " cannot enforce a device memory limit yet");
}

}  // namespace headinfer
