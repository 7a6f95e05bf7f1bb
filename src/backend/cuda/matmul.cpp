// Matmul through cuBLAS (cublasGemmEx, f32 compute), except F16 / BF16 weights with
// at most kGemvMaxRows input rows, which go to the own GEMV kernel (gemv.cu). Row-major out[n, R] =
// x[n, C] @ W[R, C]^T is, in cuBLAS's column-major terms, out^T (R x n) =
// W^T (R x C, W stored as a C x R column-major matrix) * x^T (C x n).
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <cstdint>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/cuda_internal.hpp"
#include "backend/cuda/kernels.hpp"

namespace headinfer::cuda {

ScratchBuffer::~ScratchBuffer() {
  if (ptr_) cudaFree(ptr_);
}

void* ScratchBuffer::get(size_t bytes, cudaStream_t stream) {
  if (bytes <= size_) return ptr_;
  if (ptr_) {
    HI_CUDA_CHECK(cudaStreamSynchronize(stream));
    HI_CUDA_CHECK(cudaFree(ptr_));
    ptr_ = nullptr;
    size_ = 0;
  }
  const size_t want = std::max(bytes, size_t{1} << 20);
  HI_CUDA_CHECK(cudaMalloc(&ptr_, want));
  size_ = want;
  return ptr_;
}

CublasGemm::CublasGemm(cudaStream_t stream) : stream_(stream) {
  HI_CUBLAS_CHECK(cublasCreate(&handle_));
  HI_CUBLAS_CHECK(cublasSetStream(handle_, stream_));
  // Default math: no TF32 for f32 GEMMs (parity with the CPU reference).
  HI_CUBLAS_CHECK(cublasSetMathMode(handle_, CUBLAS_DEFAULT_MATH));
  HI_CUBLAS_CHECK(cublasSetWorkspace(handle_, workspace_.get(kWorkspaceBytes, stream_), kWorkspaceBytes));
  act_.get(kActBytes, stream_);
  // The own GEMV beats cuBLAS at 1-2 rows (1.0-1.34x on the H200, bench/cuda_gemv)
  // and loses from 4 on the large projections, so decode takes it by default.
  // HEADINFER_CUDA_GEMV=0: never; =1: up to kGemvMaxRows (the parity tests).
  gemv_max_rows_ = kGemvDefaultRows;
  if (const char* e = std::getenv("HEADINFER_CUDA_GEMV")) gemv_max_rows_ = std::strcmp(e, "1") == 0 ? kGemvMaxRows : 0;
}

CublasGemm::~CublasGemm() {
  if (handle_) cublasDestroy(handle_);
}

void CublasGemm::matmul(const float* x, int n, const Mat& w, const Mat* bias, float* out, int64_t x_stride) {
  matmul_impl(x, n, w, bias, out, x_stride, /*allow_gemv=*/!takes_cublas(n));
}

bool CublasGemm::matmul_swiglu(const float* x, int n, const Mat& w, float* gu) {
  const bool gemv = (forward_rows_ > 0 ? forward_rows_ : n) <= gemv_max_rows_ && n >= 1 && n <= 2;
  if (!gemv || w.empty() || w.rows % 2 != 0 || w.rows > INT32_MAX || w.cols > INT32_MAX) return false;
  // Bits as matmul's GEMV gives them: its tunings change the speed, never a row's sum.
  return launch_gemv_swiglu(x, w.cols, n, w.data, w.dtype, static_cast<int>(w.rows), static_cast<int>(w.cols), gu,
                            w.rows, stream_);
}

bool CublasGemm::matmul_rope_store(const float* x, int n, const Mat& w, const Mat* bias, float* out, int n_rot,
                                   int n_kv, int head_dim, int64_t pos, const double* inv_freq, DType kv_dt,
                                   void* const* dst_k, void* const* dst_v) {
  if (n != 1 || takes_cublas(n) || w.empty() || w.rows > INT32_MAX || w.cols > INT32_MAX) return false;
  const bool has_bias = bias && !bias->empty();
  if (has_bias && bias->rows * bias->cols != w.rows) return false;  // matmul names the mismatch
  return launch_gemv_rope_store(x, w.data, w.dtype, static_cast<int>(w.rows), static_cast<int>(w.cols),
                                has_bias ? bias->data : nullptr, has_bias ? bias->dtype : DType::F32, out, n_rot, n_kv,
                                head_dim, pos, inv_freq, kv_dt, dst_k, dst_v, tuning_.prefetch_bytes, stream_);
}

void CublasGemm::matmul_cublas(const float* x, int n, const Mat& w, const Mat* bias, float* out, int64_t x_stride) {
  matmul_impl(x, n, w, bias, out, x_stride, /*allow_gemv=*/false);
}

void CublasGemm::matmul_impl(const float* x, int n, const Mat& w, const Mat* bias, float* out, int64_t x_stride,
                             bool allow_gemv) {
  if (n <= 0) return;
  HI_CHECK(!w.empty(), "cuda matmul: weight matrix is empty");
  HI_CHECK(w.rows > 0 && w.cols > 0 && w.rows <= INT32_MAX && w.cols <= INT32_MAX,
           "cuda matmul: weight shape [" << w.rows << ", " << w.cols << "] is out of range");
  const int R = static_cast<int>(w.rows), C = static_cast<int>(w.cols);
  if (x_stride == 0) x_stride = C;
  HI_CHECK(x_stride >= C && x_stride <= INT32_MAX,
           "cuda matmul: input rows " << x_stride << " floats apart for " << C << " columns");
  const bool has_bias = bias && !bias->empty();
  if (has_bias)
    HI_CHECK(bias->rows * bias->cols == w.rows,
             "cuda matmul: bias of " << bias->rows * bias->cols << " values for " << w.rows << " outputs");
  if (allow_gemv && n <= kGemvMaxRows && (w.dtype == DType::BF16 || w.dtype == DType::F16)) {
    // Decode-sized n: reading W once bounds the time, and cuBLAS's kernels for n = 1
    // (plus the activation conversion launch) fall well short of that.
    launch_gemv(x, x_stride, n, w.data, w.dtype, R, C, has_bias ? bias->data : nullptr,
                has_bias ? bias->dtype : DType::F32, out, stream_, tuning_);
    return;
  }
  if (w.dtype == DType::BF16 || w.dtype == DType::F16) {
    // Rows past the fixed activation buffer run as slices; each output row is
    // still computed alone.
    const int max_rows = static_cast<int>(std::max<size_t>(1, kActBytes / (static_cast<size_t>(C) * 2)));
    for (int r0 = 0; r0 < n; r0 += max_rows) {
      const int rows = std::min(max_rows, n - r0);
      void* act = act_.get(static_cast<size_t>(rows) * C * 2, stream_);
      launch_convert_f32_rows(x + static_cast<int64_t>(r0) * x_stride, rows, C, x_stride, w.dtype, act,
                              stream_);  // packed: ldb = C
      matmul_16(act, C, rows, w, bias, out + static_cast<int64_t>(r0) * R, DType::F32);
    }
    return;
  }
  HI_CHECK(w.dtype == DType::F32,
           "cuda matmul: weight dtype " << dtype_name(w.dtype) << " is not supported (F32, F16, BF16)");
  float beta = 0.f;
  if (has_bias) {
    launch_fill_bias(out, n, R, bias->data, bias->dtype, stream_);
    beta = 1.f;
  }
  const float alpha = 1.f;
  HI_CUBLAS_CHECK(cublasGemmEx(handle_, CUBLAS_OP_T, CUBLAS_OP_N, R, n, C, &alpha, w.data, CUDA_R_32F, C, x, CUDA_R_32F,
                               static_cast<int>(x_stride), &beta, out, CUDA_R_32F, R, CUBLAS_COMPUTE_32F,
                               CUBLAS_GEMM_DEFAULT));
}

void CublasGemm::matmul_16(const void* x, int64_t x_stride, int n, const Mat& w, const Mat* bias, void* out,
                           DType out_dtype) {
  if (n <= 0) return;
  HI_CHECK(w.dtype == DType::BF16 || w.dtype == DType::F16,
           "cuda matmul_16: weight dtype " << dtype_name(w.dtype) << ", expected BF16 or F16");
  HI_CHECK(out_dtype == DType::F32 || out_dtype == w.dtype,
           "cuda matmul_16: output dtype " << dtype_name(out_dtype) << ", expected F32 or " << dtype_name(w.dtype));
  HI_CHECK(
      w.rows > 0 && w.cols > 0 && w.rows <= INT32_MAX && w.cols <= INT32_MAX && x_stride >= w.cols &&
          x_stride <= INT32_MAX,
      "cuda matmul_16: weight [" << w.rows << ", " << w.cols << "] with input rows " << x_stride << " elements apart");
  const bool has_bias = bias && !bias->empty();
  HI_CHECK(!has_bias || (out_dtype == DType::F32 && bias->rows * bias->cols == w.rows),
           "cuda matmul_16: a bias needs F32 output of " << w.rows << " values a row");
  const int R = static_cast<int>(w.rows), C = static_cast<int>(w.cols);
  float beta = 0.f;
  if (has_bias) {
    launch_fill_bias(static_cast<float*>(out), n, R, bias->data, bias->dtype, stream_);
    beta = 1.f;
  }
  const cudaDataType_t type = w.dtype == DType::BF16 ? CUDA_R_16BF : CUDA_R_16F;
  const float alpha = 1.f;
  HI_CUBLAS_CHECK(cublasGemmEx(handle_, CUBLAS_OP_T, CUBLAS_OP_N, R, n, C, &alpha, w.data, type, C, x, type,
                               static_cast<int>(x_stride), &beta, out, out_dtype == DType::F32 ? CUDA_R_32F : type, R,
                               CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

}  // namespace headinfer::cuda
