// Embedding lookup: each row converted to f32.
#include <cmath>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/device_util.cuh"
#include "backend/cuda/kernels.hpp"

namespace headinfer::cuda {
namespace {

constexpr int kBlock = 256;

// Block (token, kBlock columns): one load per thread, so a decode step's single row is
// one memory latency, not cols / kBlock of them in a row.
__global__ void embed_kernel(const int32_t* __restrict__ ids, const void* __restrict__ table, DType dt,
                             int64_t rows, int64_t cols, float* __restrict__ out) {
  const int64_t i = static_cast<int64_t>(blockIdx.y) * kBlock + threadIdx.x;
  if (i >= cols) return;
  const int32_t id = ids[blockIdx.x];
  float* o = out + blockIdx.x * cols;
  // Cannot throw from a kernel: an id out of range poisons the row instead.
  o[i] =
      id < 0 || id >= rows ? __int_as_float(0x7fc00000) : load_as_f32(table, dt, static_cast<int64_t>(id) * cols + i);
}

}  // namespace

void launch_embed(const int32_t* ids, int n, const void* table, DType dt, int64_t rows, int64_t cols, float* out,
                  cudaStream_t s) {
  if (n <= 0 || cols <= 0) return;
  const dim3 grid(n, static_cast<unsigned>((cols + kBlock - 1) / kBlock));
  embed_kernel<<<grid, kBlock, 0, s>>>(ids, table, dt, rows, cols, out);
  HI_CUDA_CHECK_LAUNCH("embed_kernel");
}

}  // namespace headinfer::cuda
