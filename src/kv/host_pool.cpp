#include "kv/host_pool.hpp"

#include <algorithm>

#include "common/units.hpp"
#include "headinfer/error.hpp"

namespace headinfer {

HostPool::HostPool(Backend& backend, size_t block_bytes, int64_t min_chunk_bytes)
    : backend_(backend), block_bytes_(block_bytes) {
  HI_CHECK(block_bytes > 0, "host pool: empty block");
  const int64_t per = static_cast<int64_t>(block_bytes);
  blocks_per_chunk_ = std::max<int64_t>(1, (min_chunk_bytes + per - 1) / per);
}

HostPool::~HostPool() {
  for (uint8_t* c : chunks_) backend_.free_host(c);
}

void HostPool::grow_to(int64_t blocks) {
  while (this->blocks() < blocks) {
    void* p = nullptr;
    try {
      p = backend_.alloc_host(chunk_bytes());
    } catch (const Error& e) {
      HI_FAIL("KV host pool: cannot grow past " << format_bytes(static_cast<int64_t>(bytes())) << " by "
                                                << format_bytes(static_cast<int64_t>(chunk_bytes())) << ": "
                                                << e.what());
    }
    chunks_.push_back(static_cast<uint8_t*>(p));
  }
}

}  // namespace headinfer
