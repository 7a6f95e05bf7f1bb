// Embedding lookup: one block per token, the row converted to f32.
#include <cmath>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/device_util.cuh"
#include "backend/cuda/kernels.hpp"

namespace headinfer::cuda {
namespace {

constexpr int kBlock = 256;

__global__ void embed_kernel(const int32_t* __restrict__ ids, const void* __restrict__ table, DType dt,
                             int64_t rows, int64_t cols, float* __restrict__ out) {
  const int32_t id = ids[blockIdx.x];
  float* o = out + blockIdx.x * cols;
  if (id < 0 || id >= rows) {  // cannot throw from a kernel: poison the row instead
    for (int64_t i = threadIdx.x; i < cols; i += kBlock) o[i] = __int_as_float(0x7fc00000);
    return;
  }
  const int64_t base = static_cast<int64_t>(id) * cols;
  for (int64_t i = threadIdx.x; i < cols; i += kBlock) o[i] = load_as_f32(table, dt, base + i);
}

}  // namespace

void launch_embed(const int32_t* ids, int n, const void* table, DType dt, int64_t rows, int64_t cols, float* out,
                  cudaStream_t s) {
  if (n <= 0 || cols <= 0) return;
  embed_kernel<<<n, kBlock, 0, s>>>(ids, table, dt, rows, cols, out);
  HI_CUDA_CHECK_LAUNCH("embed_kernel");
}

}  // namespace headinfer::cuda
