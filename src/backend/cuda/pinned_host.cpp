#include "backend/cuda/pinned_host.hpp"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>

#include "backend/cuda/cuda_check.hpp"
#include "common/units.hpp"
#include "headinfer/error.hpp"

namespace headinfer::cuda {

PinnedHost::~PinnedHost() {
  for (auto& [p, n] : sizes_) cudaFreeHost(p);
}

void* PinnedHost::alloc(size_t bytes) {
  void* p = nullptr;
  const auto t0 = std::chrono::steady_clock::now();
  const cudaError_t e = cudaHostAlloc(&p, std::max<size_t>(bytes, 1), cudaHostAllocDefault);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (e != cudaSuccess) {
    cudaGetLastError();
    std::lock_guard<std::mutex> lk(mu_);
    HI_FAIL("cuda:" << device_ << ": cannot pin " << format_bytes(static_cast<int64_t>(bytes))
                    << " of host memory for the KV host pool (" << cudaGetErrorName(e) << ": " << cudaGetErrorString(e)
                    << "; " << format_bytes(stats_.live_bytes) << " already pinned): lower --max-context, or raise "
                    << "--gpu-memory so fewer slabs are offloaded");
  }
  std::lock_guard<std::mutex> lk(mu_);
  sizes_.emplace(p, bytes);
  stats_.live_bytes += static_cast<int64_t>(bytes);
  stats_.live_blocks += 1;
  stats_.peak_bytes = std::max(stats_.peak_bytes, stats_.live_bytes);
  stats_.total_allocs += 1;
  stats_.alloc_seconds += s;
  return p;
}

void PinnedHost::free(void* p) {
  if (p == nullptr) return;
  size_t bytes = 0;
  {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = sizes_.find(p);
    HI_CHECK(it != sizes_.end(), "cuda backend: free_host of a pointer alloc_host did not hand out");
    bytes = it->second;
    sizes_.erase(it);
    stats_.live_bytes -= static_cast<int64_t>(bytes);
    stats_.live_blocks -= 1;
  }
  HI_CUDA_CHECK(cudaFreeHost(p));
}

PinnedStats PinnedHost::stats() const {
  std::lock_guard<std::mutex> lk(mu_);
  return stats_;
}

}  // namespace headinfer::cuda
