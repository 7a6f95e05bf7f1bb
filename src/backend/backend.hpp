// The compute interface the runtime drives. The CPU backend is the reference
// implementation; others (CUDA) must match it op by op. Activations are f32 rows;
// weights are matrices in their stored dtype; KV lives in slabs of any KV dtype.
// Pointers handed to ops belong to the backend's memory (alloc()).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "format/tensor.hpp"

namespace headinfer {

// A weight matrix [rows, cols] (or a vector: rows = 1) in backend memory.
struct Mat {
  DType dtype = DType::F32;
  const void* data = nullptr;
  int64_t rows = 0, cols = 0;
  bool empty() const { return data == nullptr; }
};

// A run of cached keys/values of one KV head: token i of the run is at absolute
// position pos0 + i; K and V rows are head_dim elements of kv_dtype, contiguous.
struct KvPiece {
  const void* k = nullptr;
  const void* v = nullptr;
  int64_t n_tokens = 0;
  int64_t pos0 = 0;
};

// Attention of the query heads that share one KV head.
struct AttnArgs {
  const float* q = nullptr;   // q[t * q_stride + h * head_dim + d], t < n_q, h < n_qh
  int64_t q_stride = 0;
  int n_q = 0;                // query tokens (1 in decode)
  int n_qh = 0;               // query heads served by this KV head
  int head_dim = 0;
  int64_t q_pos0 = 0;         // absolute position of query token 0 (tokens consecutive)
  bool causal = true;         // keys at positions > query position are masked
  float scale = 0.f;          // softmax scale (1/sqrt(head_dim))
  DType kv_dtype = DType::F32;
  std::vector<KvPiece> pieces;
  float* out = nullptr;       // same layout and stride as q
  int64_t out_stride = 0;
  float* lse = nullptr;       // optional: [n_q * n_qh], natural log of the softmax denominator
                              // (-inf where every key was masked)
};

struct RopeArgs {
  float* x = nullptr;          // x[t * stride + h * head_dim + d]
  int64_t stride = 0;
  int n_tokens = 0, n_heads = 0, head_dim = 0;
  int64_t pos0 = 0;            // positions pos0 .. pos0 + n_tokens - 1
  const double* inv_freq = nullptr;  // head_dim / 2 values
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;

  // Memory in the backend's space.
  virtual void* alloc(size_t bytes) = 0;
  virtual void free(void* p) = 0;
  virtual void upload(void* dst, const void* src, size_t bytes) = 0;
  virtual void download(void* dst, const void* src, size_t bytes) = 0;
  virtual void copy(void* dst, const void* src, size_t bytes) = 0;  // within the backend
  // Makes a weight tensor usable by ops (the CPU backend uses mapped bytes as is,
  // converting only dtypes it cannot read directly).
  virtual Mat prepare(const Tensor& t, std::vector<std::shared_ptr<const void>>& keep_alive) = 0;

  // out[i, :] = table[ids[i], :]
  virtual void embed(const int32_t* ids, int n, const Mat& table, float* out) = 0;
  // out = x / rms(x) * w, row by row
  virtual void rmsnorm(const float* x, const Mat& w, float eps, int n, float* out) = 0;
  // out[n, W.rows] = x[n, W.cols] @ W^T (+ bias)
  virtual void matmul(const float* x, int n, const Mat& w, const Mat* bias, float* out) = 0;
  // rotate-half RoPE in place
  virtual void rope(const RopeArgs& a) = 0;
  virtual void attention(const AttnArgs& a) = 0;
  // Combines two partial attention results over disjoint keys: (o_a, lse_a) and
  // (o_b, lse_b) -> (o_a, lse_a). Rows of head_dim floats with the given strides.
  virtual void merge_attention(float* o_a, float* lse_a, const float* o_b, const float* lse_b, int n_q, int n_qh,
                               int head_dim, int64_t stride_a, int64_t stride_b) = 0;
  // out = silu(gate) * up
  virtual void swiglu(const float* gate, const float* up, int64_t n, float* out) = 0;
  // x += y
  virtual void add(float* x, const float* y, int64_t n) = 0;
  // Converts f32 rows into KV dtype rows at dst (a slab or buffer).
  virtual void store_kv(const float* src, int64_t src_stride, int n, int head_dim, DType kv_dtype, void* dst) = 0;
  virtual void synchronize() = 0;
};

std::unique_ptr<Backend> make_cpu_backend(int n_threads = 0);

}  // namespace headinfer
