// Device memory of the CUDA backend, counted: every alloc() and every prepared
// weight goes through here, against the --gpu-memory budget (set_limit). Sizes are
// counted in 256-byte granules, as the planner's footprint counts them, so the
// accounted peak is the plan's prediction of the engine's allocations. The driver's
// own figures (cudaMemGetInfo: context, library workspaces, allocator granularity
// included) are sampled after each allocation and at every synchronisation point,
// and their highest "used" value is kept as driver_peak_used.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

#include "backend/backend.hpp"

namespace headinfer::cuda {

class DeviceMemory {
 public:
  explicit DeviceMemory(int device) : device_(device) {}
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;

  // What an allocation of `bytes` takes from the device, as kv/footprint.hpp's
  // alloc_rounded counts it: 256-byte granules below 1 MiB, whole 2 MiB pages from
  // 1 MiB on (the driver maps large allocations in 2 MiB pages).
  static int64_t rounded(size_t bytes) {
    const size_t b = std::max<size_t>(bytes, 1), page = size_t{2} << 20;
    return static_cast<int64_t>(b >= (size_t{1} << 20) ? (b + page - 1) / page * page : (b + 255) / 256 * 256);
  }

  // cudaMalloc, counted against the limit; throws Error naming --gpu-memory past it
  // (or when the device itself is out of memory). `what` names the use in errors.
  void* alloc(size_t bytes, const char* what);
  // Frees a pointer alloc() returned (nullptr: no-op).
  void free(void* p);

  void set_limit(int64_t bytes);  // < 0: none
  DeviceMemoryInfo info();        // samples the driver first
  void reset_peak();              // both peaks restart from what is in use now
  // Reads cudaMemGetInfo and raises driver_peak_used when it is higher.
  void sample_driver();

 private:
  void take(int64_t bytes, const char* what);  // under mu_

  const int device_;
  std::mutex mu_;
  std::unordered_map<void*, int64_t> sizes_;
  int64_t limit_ = -1, in_use_ = 0, peak_ = 0;
  int64_t driver_free_ = -1, driver_total_ = -1, driver_peak_used_ = -1;
};

}  // namespace headinfer::cuda
