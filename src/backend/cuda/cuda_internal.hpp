// Host-side helpers of the CUDA backend shared by its .cpp files.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstddef>

#include "backend/backend.hpp"
#include "backend/cuda/kernels.hpp"

namespace headinfer::cuda {

// A grow-only device buffer for temporaries of one stream. Growing waits for the
// stream, so work still reading the old buffer finishes first.
class ScratchBuffer {
 public:
  ScratchBuffer() = default;
  ScratchBuffer(const ScratchBuffer&) = delete;
  ScratchBuffer& operator=(const ScratchBuffer&) = delete;
  ~ScratchBuffer();
  void* get(size_t bytes, cudaStream_t stream);
  size_t size() const { return size_; }

 private:
  void* ptr_ = nullptr;
  size_t size_ = 0;
};

// x @ W^T through cuBLAS: F32 weights as a plain f32 GEMM (no TF32); F16 / BF16
// weights with the activations converted to the weight dtype, f32 accumulation and
// f32 output. Bias is pre-filled into the output and added with beta = 1.
// Device memory is fixed at construction (a cuBLAS workspace and the converted-
// activation buffer; long inputs run in row slices that fit it), so it is part of
// the device overhead a plan measures and never grows during a forward.
class CublasGemm {
 public:
  static constexpr size_t kWorkspaceBytes = size_t{32} << 20;
  static constexpr size_t kActBytes = size_t{32} << 20;
  explicit CublasGemm(cudaStream_t stream);
  CublasGemm(const CublasGemm&) = delete;
  CublasGemm& operator=(const CublasGemm&) = delete;
  ~CublasGemm();
  // x_stride: floats between input rows (0: w.cols).
  // F16 / BF16 weights with n <= gemv_max_rows_ run the GEMV kernel (launch_gemv) instead.
  void matmul(const float* x, int n, const Mat& w, const Mat* bias, float* out, int64_t x_stride = 0);
  // Rows of the forward these matmuls belong to (0: unknown, decide by each call's
  // rows): GEMV or cuBLAS give different bits, so the choice follows the forward.
  void set_forward_rows(int n) { forward_rows_ = n; }
  void set_gemv_tuning(GemvTuning t) { tuning_ = t; }
  // The gate/up GEMV with the SwiGLU in its epilogue (launch_gemv_swiglu) where matmul
  // would take the GEMV for these rows and the shape allows; false, nothing launched,
  // otherwise. gu: rows of w.rows floats, the SwiGLU in their first half.
  bool matmul_swiglu(const float* x, int n, const Mat& w, float* gu);
  // One token's fused QKV projection with RoPE at pos and the K/V store in the GEMV's
  // epilogue (launch_gemv_rope_store) where matmul would take the GEMV for it and the
  // shape allows; false, nothing launched, otherwise. inv_freq: device memory.
  bool matmul_rope_store(const float* x, int n, const Mat& w, const Mat* bias, float* out, int n_rot, int n_kv,
                         int head_dim, int64_t pos, const double* inv_freq, DType kv_dt, void* const* dst_k,
                         void* const* dst_v);
  // Always cuBLAS (benchmarks compare it with the GEMV kernel).
  void matmul_cublas(const float* x, int n, const Mat& w, const Mat* bias, float* out, int64_t x_stride = 0);
  // Whether matmul over n rows of this forward goes to cuBLAS (not the GEMV kernel).
  bool takes_cublas(int n) const {
    return (forward_rows_ > 0 ? forward_rows_ : n) > gemv_max_rows_ || n > kGemvMaxRows;
  }
  // out (n rows of w.rows, out_dtype F32 or w's F16 / BF16) = x @ W^T (+ bias, F32 out
  // only), with x already rows in w's dtype, x_stride elements apart: one cuBLAS call,
  // no conversion, no GEMV.
  void matmul_16(const void* x, int64_t x_stride, int n, const Mat& w, const Mat* bias, void* out, DType out_dtype);

 private:
  void matmul_impl(const float* x, int n, const Mat& w, const Mat* bias, float* out, int64_t x_stride,
                   bool allow_gemv);
  int gemv_max_rows_ = 0;  // inputs of at most this many rows take the GEMV kernel
  int forward_rows_ = 0;
  GemvTuning tuning_ = gemv_tuning_from_env();

  cudaStream_t stream_;
  cublasHandle_t handle_ = nullptr;
  ScratchBuffer act_, workspace_;
};

}  // namespace headinfer::cuda
