// Pinned (page-locked) host memory for the KV host pool: the only host memory the
// copy engines read and write at full link speed, and asynchronously. Setting it up
// is slow (0.2-0.5 s per GiB on the reference machine), so callers take it in
// large chunks and keep it (kv/host_pool.hpp). Live bytes are counted so tests can
// check that nothing leaks across requests.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <unordered_map>

namespace headinfer::cuda {

struct PinnedStats {
  int64_t live_bytes = 0, live_blocks = 0;
  int64_t peak_bytes = 0;
  int64_t total_allocs = 0;
  double alloc_seconds = 0;  // time spent pinning
};

class PinnedHost {
 public:
  explicit PinnedHost(int device);
  ~PinnedHost();  // frees what is still held
  PinnedHost(const PinnedHost&) = delete;
  PinnedHost& operator=(const PinnedHost&) = delete;

  // Huge-page-advised anonymous memory + cudaHostRegister for large blocks,
  // cudaHostAlloc otherwise (and as the fallback); throws Error with the size and the
  // driver's reason on failure.
  void* alloc(size_t bytes);
  void free(void* p);
  PinnedStats stats() const;

 private:
  const int device_;
  int64_t limit_ = -1;  // HEADINFER_PINNED_LIMIT (tests): refuse pinning past it
  mutable std::mutex mu_;
  void release(void* p);  // with mu_ held (or from the destructor)
  std::unordered_map<void*, size_t> sizes_;
  std::unordered_map<void*, size_t> mapped_;  // registered mappings and their lengths
  PinnedStats stats_;
};

}  // namespace headinfer::cuda
