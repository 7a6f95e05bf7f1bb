// The process's resident memory as the kernel counts it (Linux /proc), so a bench row
// can say how much host RAM a run took besides the KV pool it planned.
#pragma once

#include <cstdint>

namespace headinfer {

// Starts a new peak: the kernel's high-water mark of resident memory (VmHWM) drops to
// the current RSS. Quietly does nothing where /proc does not allow it.
void reset_peak_rss();

// Peak resident bytes since the last reset (VmHWM), or -1 where unknown.
int64_t peak_rss_bytes();

}  // namespace headinfer
