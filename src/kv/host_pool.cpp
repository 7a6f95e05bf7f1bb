#include "kv/host_pool.hpp"

#include <algorithm>
#include <cstdlib>

#include "common/units.hpp"
#include "headinfer/error.hpp"

namespace headinfer {

namespace {
constexpr size_t kPage = 4096;
size_t page_rounded(size_t bytes) { return (bytes + kPage - 1) / kPage * kPage; }
}  // namespace

HostPool::HostPool(Backend& backend, size_t block_bytes, int64_t min_chunk_bytes, int64_t pinned_limit)
    : backend_(backend), block_bytes_(block_bytes), pinned_limit_(pinned_limit) {
  HI_CHECK(block_bytes > 0, "host pool: empty block");
  HI_CHECK(pinned_limit >= -1, "host pool: pinned limit " << pinned_limit << ", expected -1 (all) or a byte count");
  const int64_t per = static_cast<int64_t>(block_bytes);
  blocks_per_chunk_ = std::max<int64_t>(1, (min_chunk_bytes + per - 1) / per);
}

HostPool::~HostPool() {
  for (size_t i = 0; i < chunks_.size(); ++i) {
    if (i < pinned_chunks_) backend_.free_host(chunks_[i]);
    else std::free(chunks_[i]);
  }
}

void HostPool::grow_to(int64_t blocks) {
  while (this->blocks() < blocks) {
    const bool pin = pinned_limit_ < 0 || static_cast<int64_t>(pinned_bytes() + chunk_bytes()) <= pinned_limit_;
    // Pinned chunks come first, so a pageable one is never followed by a pinned one.
    const bool pinned = pin && pinned_chunks_ == chunks_.size();
    void* p = nullptr;
    try {
      if (pinned) {
        p = backend_.alloc_host(chunk_bytes());
      } else {
        p = std::aligned_alloc(kPage, page_rounded(chunk_bytes()));
        HI_CHECK(p != nullptr, "out of host memory (pageable)");
      }
    } catch (const Error& e) {
      HI_FAIL("KV host pool: cannot grow past " << format_bytes(static_cast<int64_t>(bytes())) << " by "
                                                << format_bytes(static_cast<int64_t>(chunk_bytes())) << ": "
                                                << e.what());
    }
    chunks_.push_back(static_cast<uint8_t*>(p));
    if (pinned) ++pinned_chunks_;
  }
}

}  // namespace headinfer
