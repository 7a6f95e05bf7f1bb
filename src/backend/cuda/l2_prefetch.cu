// Early L2 prefetch of a weight matrix (Backend::prefetch_weight): in a decode step the
// ops between the QKV and the O projections (RoPE, the KV store, attention, combine)
// are latency-bound at short contexts and leave DRAM mostly idle, while the O GEMV
// after them is bound by reading W_o. A grid that asks L2 for W_o's leading columns
// before the attention starts moves those reads into the idle window.
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/device_util.cuh"
#include "backend/cuda/kernels.hpp"

namespace headinfer::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxBlocks = 128;
constexpr int64_t kLine = 128;

// Line l of row r for every (r, l) with l < lines: the first `lines` lines of each row,
// the part of a row a row-streaming GEMV reads first. Weights are constant, so the
// prefetches go out before the grid dependency wait; the wait then keeps the stream's
// order whole for the kernels after this one (launch_maybe_pdl's rule).
__global__ void __launch_bounds__(kThreads)
    l2_prefetch_kernel(const char* __restrict__ w, int64_t rows, int64_t row_bytes, int64_t lines) {
  const int64_t n = rows * lines;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * kThreads) {
    const int64_t r = i / lines, l = i - r * lines;
    prefetch_l2(w + r * row_bytes + l * kLine);
  }
  pdl_wait();
  pdl_launch_dependents();
}

}  // namespace

int64_t l2_prefetch_budget(int64_t l2_bytes, int64_t weight_bytes, int64_t bytes_read_first, int64_t cap) {
  if (cap <= 0 || l2_bytes <= 0 || weight_bytes <= 0) return 0;
  // Whatever else passes through L2 before the weight's reader evicts as much of it.
  const int64_t room = l2_bytes - (bytes_read_first > 0 ? bytes_read_first : 0);
  int64_t b = weight_bytes < cap ? weight_bytes : cap;
  if (b > room) b = room;
  return b >= kMinPrefetchBytes ? b : 0;
}

void launch_l2_prefetch(const void* w, int64_t rows, int64_t row_bytes, int64_t bytes, cudaStream_t s) {
  if (!w || rows <= 0 || row_bytes <= 0 || bytes <= 0) return;
  const int64_t row_lines = (row_bytes + kLine - 1) / kLine;
  int64_t lines = bytes / (rows * kLine);
  if (lines > row_lines) lines = row_lines;
  if (lines <= 0) return;
  // l < row_lines, so l * 128 < row_bytes: every address asked for lies inside the matrix.
  const int64_t n = rows * lines;
  int64_t blocks = (n + kThreads - 1) / kThreads;
  if (blocks > kMaxBlocks) blocks = kMaxBlocks;
  launch_maybe_pdl(l2_prefetch_kernel, dim3(static_cast<unsigned>(blocks)), dim3(kThreads), 0, s,
                   static_cast<const char*>(w), rows, row_bytes, lines);
  HI_CUDA_CHECK_LAUNCH("l2_prefetch_kernel");
}

}  // namespace headinfer::cuda
