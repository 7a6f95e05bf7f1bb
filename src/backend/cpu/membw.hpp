// The machine's memory read bandwidth: the floor that memory-bound decode is
// measured against (a GEMV cannot stream weights faster than this).
#pragma once

#include <cstddef>

#include "common/thread_pool.hpp"

namespace headinfer {

// Streams a buffer of `bytes` (much larger than the last-level cache) with all
// threads of the pool; returns GB/s (1e9 bytes per second), the best of 10
// passes (see ReadBandwidthProbe::best_gbs). About 0.5 s for 1 GiB on an idle
// machine, first touch included; allocation failure raises an Error.
double measure_read_bandwidth_gbs(ThreadPool& pool, size_t bytes = size_t{1} << 30);

// The same measurement with the buffer kept, to re-measure between other work:
// on a shared host the available bandwidth drifts by 2x within seconds, so a
// kernel's fraction of bandwidth is only meaningful against a nearby reading.
class ReadBandwidthProbe {
 public:
  ReadBandwidthProbe(ThreadPool& pool, size_t bytes = size_t{1} << 30);
  ~ReadBandwidthProbe();
  ReadBandwidthProbe(const ReadBandwidthProbe&) = delete;
  ReadBandwidthProbe& operator=(const ReadBandwidthProbe&) = delete;

  double best_gbs(int passes);  // best of `passes` full reads

 private:
  ThreadPool& pool_;
  char* mem_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace headinfer
