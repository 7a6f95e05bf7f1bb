// cuDNN's fused scaled-dot-product attention, the fast prefill path on sm_80+.
//
// Built only when the cuDNN frontend headers were found at configure time
// (HEADINFER_HAVE_CUDNN_FRONTEND), and used only when libcudnn.so.9 loads at run
// time: without either, make_cudnn_attention() says why and the backend keeps its
// own kernels. One call covers one KV run of one or more KV heads against the query
// heads of their groups: O normalised over the run, plus the softmax statistics, so
// runs merge by log-sum-exp like every other attention call.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>
#include <string>

#include "format/tensor.hpp"

namespace headinfer::cuda {

struct SdpaShape {
  int n_q = 0;       // query tokens
  int n_qh = 0;      // query heads per KV head
  int n_kv_heads = 1;
  int64_t kv_head_stride = 0;  // elements from one KV head's K (or V) to the next's
  int64_t n_kv = 0;  // keys of the run
  int head_dim = 0;
  bool causal = false;  // top-left diagonal: key i is visible to query t when i <= t (n_q == n_kv)
  float scale = 0.f;
  DType dtype = DType::BF16;  // of Q, K, V and O

  bool operator<(const SdpaShape& o) const;
};

class CudnnAttention {
 public:
  virtual ~CudnnAttention() = default;
  // Builds (once per shape) the cuDNN plan; false when cuDNN has no engine for it.
  virtual bool supports(const SdpaShape& s) = 0;
  // q, o: [n_q][n_kv_heads * n_qh][head_dim] of s.dtype; k, v: KV head j's [n_kv][head_dim]
  // at k + j * kv_head_stride; stats: [n_kv_heads * n_qh][n_q] f32, natural-log
  // log-sum-exp of the scaled scores. Runs on the stream given at
  // creation; `supports(s)` must have returned true.
  virtual void run(const SdpaShape& s, const void* q, const void* k, const void* v, void* o, float* stats) = 0;
  virtual std::string version() const = 0;
};

// The cuDNN path on `stream`, or nullptr with the reason in `why`.
std::unique_ptr<CudnnAttention> make_cudnn_attention(cudaStream_t stream, std::string& why);

}  // namespace headinfer::cuda
