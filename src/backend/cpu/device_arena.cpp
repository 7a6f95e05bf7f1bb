#include "backend/cpu/device_arena.hpp"

#include <algorithm>
#include <cstdlib>

#include "common/units.hpp"
#include "headinfer/error.hpp"

namespace headinfer {

void DeviceArena::take(int64_t bytes, const char* what) {
  HI_CHECK(limit_ < 0 || in_use_ + bytes <= limit_,
           "--gpu-memory: device budget exceeded allocating " << format_bytes(bytes) << " for " << what << " with "
                                                              << format_bytes(in_use_) << " of "
                                                              << format_bytes(limit_)
                                                              << " in use (emulated device of the cpu backend)");
  in_use_ += bytes;
  peak_ = std::max(peak_, in_use_);
}

void* DeviceArena::alloc(size_t bytes) {
  const int64_t size = rounded(bytes);
  std::lock_guard<std::mutex> lk(mu_);
  take(size, "a device buffer");
  void* p = std::aligned_alloc(256, static_cast<size_t>(size));
  if (p == nullptr) {
    in_use_ -= size;
    HI_FAIL("cpu backend: out of memory allocating " << bytes << " bytes");
  }
  sizes_.emplace(p, size);
  return p;
}

void DeviceArena::free(void* p) {
  if (p == nullptr) return;
  std::lock_guard<std::mutex> lk(mu_);
  auto it = sizes_.find(p);
  HI_CHECK(it != sizes_.end(), "cpu backend: free of a pointer the device arena did not allocate");
  in_use_ -= it->second;
  sizes_.erase(it);
  std::free(p);
}

void DeviceArena::charge(int64_t bytes, const char* what) {
  std::lock_guard<std::mutex> lk(mu_);
  take(bytes, what);
}

void DeviceArena::uncharge(int64_t bytes) {
  std::lock_guard<std::mutex> lk(mu_);
  in_use_ -= bytes;
}

void DeviceArena::set_limit(int64_t bytes) {
  std::lock_guard<std::mutex> lk(mu_);
  HI_CHECK(bytes < 0 || in_use_ <= bytes, "--gpu-memory " << format_bytes(bytes) << ": " << format_bytes(in_use_)
                                                          << " of device memory is already in use");
  limit_ = bytes;
}

int64_t DeviceArena::limit() const {
  std::lock_guard<std::mutex> lk(mu_);
  return limit_;
}
int64_t DeviceArena::in_use() const {
  std::lock_guard<std::mutex> lk(mu_);
  return in_use_;
}
int64_t DeviceArena::peak() const {
  std::lock_guard<std::mutex> lk(mu_);
  return peak_;
}
void DeviceArena::reset_peak() {
  std::lock_guard<std::mutex> lk(mu_);
  peak_ = in_use_;
}

}  // namespace headinfer
