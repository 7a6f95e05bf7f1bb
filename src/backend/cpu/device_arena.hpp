// The CPU backend's emulated device memory: host allocations counted against a
// budget, so --gpu-memory and the planner's promises are checked in CI exactly as
// they will be on a GPU (an allocation past the budget fails; the peak is kept).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <unordered_map>

namespace headinfer {

class DeviceArena {
 public:
  // Bytes an allocation of `bytes` takes, as on a GPU: 256-byte granules below
  // 1 MiB, whole 2 MiB pages from 1 MiB on (kv/footprint.hpp alloc_rounded, which the
  // planner uses).
  static int64_t rounded(size_t bytes) {
    const size_t b = std::max<size_t>(bytes, 1), page = size_t{2} << 20;
    return static_cast<int64_t>(b >= (size_t{1} << 20) ? (b + page - 1) / page * page : (b + 255) / 256 * 256);
  }

  void* alloc(size_t bytes);
  void free(void* p);
  // Counts memory the backend holds outside alloc() (prepared weights).
  void charge(int64_t bytes, const char* what);
  void uncharge(int64_t bytes);

  void set_limit(int64_t bytes);
  int64_t limit() const;
  int64_t in_use() const;
  int64_t peak() const;
  void reset_peak();

 private:
  void take(int64_t bytes, const char* what);  // under mu_

  mutable std::mutex mu_;
  std::unordered_map<void*, int64_t> sizes_;
  int64_t limit_ = -1, in_use_ = 0, peak_ = 0;
};

}  // namespace headinfer
