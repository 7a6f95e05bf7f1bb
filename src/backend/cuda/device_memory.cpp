#include "backend/cuda/device_memory.hpp"

#include <cuda_runtime_api.h>

#include <algorithm>

#include "backend/cuda/cuda_check.hpp"
#include "common/units.hpp"
#include "headinfer/error.hpp"

namespace headinfer::cuda {

void DeviceMemory::take(int64_t bytes, const char* what) {
  HI_CHECK(limit_ < 0 || in_use_ + bytes <= limit_,
           "--gpu-memory: device budget exceeded allocating " << format_bytes(bytes) << " for " << what << " with "
                                                              << format_bytes(in_use_) << " of " << format_bytes(limit_)
                                                              << " in use on cuda:" << device_
                                                              << " (raise --gpu-memory, or lower --max-context or "
                                                                 "--chunk-size)");
  in_use_ += bytes;
  peak_ = std::max(peak_, in_use_);
}

void* DeviceMemory::alloc(size_t bytes, const char* what) {
  const int64_t size = rounded(bytes);
  {
    std::lock_guard<std::mutex> lk(mu_);
    take(size, what);
  }
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, static_cast<size_t>(size));
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free allocation error
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    cudaGetLastError();
    std::lock_guard<std::mutex> lk(mu_);
    in_use_ -= size;
    HI_FAIL("cuda:" << device_ << ": out of device memory allocating " << format_bytes(size) << " for " << what
                    << " (" << cudaGetErrorName(e) << "; the driver reports " << format_bytes(static_cast<int64_t>(free_b))
                    << " free of " << format_bytes(static_cast<int64_t>(total_b)) << ", " << format_bytes(in_use_)
                    << " held by this engine): lower --gpu-memory to what the GPU really has free");
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    sizes_.emplace(p, size);
  }
  sample_driver();
  return p;
}

void DeviceMemory::free(void* p) {
  if (p == nullptr) return;
  int64_t size = 0;
  {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = sizes_.find(p);
    HI_CHECK(it != sizes_.end(), "cuda backend: free of a pointer its allocator did not hand out");
    size = it->second;
    sizes_.erase(it);
  }
  // Sample before giving memory back: the peak is what was held until now.
  sample_driver();
  HI_CUDA_CHECK(cudaFree(p));
  std::lock_guard<std::mutex> lk(mu_);
  in_use_ -= size;
}

void DeviceMemory::set_limit(int64_t bytes) {
  std::lock_guard<std::mutex> lk(mu_);
  HI_CHECK(bytes < 0 || in_use_ <= bytes, "--gpu-memory " << format_bytes(bytes) << ": " << format_bytes(in_use_)
                                                          << " of device memory is already in use");
  limit_ = bytes;
}

void DeviceMemory::sample_driver() {
  size_t free_b = 0, total_b = 0;
  if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) {
    cudaGetLastError();
    return;
  }
  std::lock_guard<std::mutex> lk(mu_);
  driver_free_ = static_cast<int64_t>(free_b);
  driver_total_ = static_cast<int64_t>(total_b);
  driver_peak_used_ = std::max(driver_peak_used_, driver_total_ - driver_free_);
}

DeviceMemoryInfo DeviceMemory::info() {
  sample_driver();
  std::lock_guard<std::mutex> lk(mu_);
  DeviceMemoryInfo m;
  m.in_use = in_use_;
  m.peak = peak_;
  m.limit = limit_;
  m.driver_free = driver_free_;
  m.driver_total = driver_total_;
  m.driver_peak_used = driver_peak_used_;
  return m;
}

void DeviceMemory::reset_peak() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    peak_ = in_use_;
    driver_peak_used_ = -1;
  }
  sample_driver();
}

}  // namespace headinfer::cuda
