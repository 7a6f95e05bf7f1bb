// CUDA / cuBLAS status checks: a failure becomes an HI_FAIL naming the call,
// the error and the source location.
#pragma once

#include <cublas_api.h>
#include <cuda_runtime_api.h>

#include "headinfer/error.hpp"

namespace headinfer::cuda {

inline const char* cublas_status_name(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return "CUBLAS_STATUS_?";
  }
}

}  // namespace headinfer::cuda

#define HI_CUDA_CHECK(call)                                                                      \
  do {                                                                                           \
    cudaError_t hi_cuda_err_ = (call);                                                           \
    if (hi_cuda_err_ != cudaSuccess)                                                             \
      HI_FAIL("CUDA error: " << #call << ": " << cudaGetErrorName(hi_cuda_err_) << " ("          \
                             << cudaGetErrorString(hi_cuda_err_) << ") at " << __FILE__ << ":"   \
                             << __LINE__);                                                       \
  } while (0)

#define HI_CUBLAS_CHECK(call)                                                                    \
  do {                                                                                           \
    cublasStatus_t hi_cublas_st_ = (call);                                                       \
    if (hi_cublas_st_ != CUBLAS_STATUS_SUCCESS)                                                  \
      HI_FAIL("cuBLAS error: " << #call << ": " << ::headinfer::cuda::cublas_status_name(hi_cublas_st_) \
                               << " at " << __FILE__ << ":" << __LINE__);                        \
  } while (0)

// After a kernel launch: reports launch-configuration errors (and earlier async ones).
#define HI_CUDA_CHECK_LAUNCH(kernel_name)                                                       \
  do {                                                                                           \
    cudaError_t hi_cuda_err_ = cudaGetLastError();                                               \
    if (hi_cuda_err_ != cudaSuccess)                                                             \
      HI_FAIL("CUDA error: launch of " << kernel_name << ": " << cudaGetErrorName(hi_cuda_err_)  \
                                       << " (" << cudaGetErrorString(hi_cuda_err_) << ") at "     \
                                       << __FILE__ << ":" << __LINE__);                          \
  } while (0)
