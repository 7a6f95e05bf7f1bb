// The machine's memory read bandwidth: the floor that memory-bound decode is
// measured against (a GEMV cannot stream weights faster than this).
#pragma once

#include <cstddef>

#include "common/thread_pool.hpp"

namespace headinfer {

// Streams a buffer of `bytes` (much larger than the last-level cache) with every
// thread of the pool reading its own contiguous part; returns the best of several
// passes in GB/s (1e9 bytes per second). Takes about 10 passes' time plus the
// first touch of the buffer; allocation failure raises an Error.
double measure_read_bandwidth_gbs(ThreadPool& pool, size_t bytes = size_t{1} << 30);

}  // namespace headinfer
