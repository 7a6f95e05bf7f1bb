// Host -> device copy bandwidth, the planner's main input: measured once per
// backend (large async copies from host-pool memory) and cached in
// $HEADINFER_CACHE_DIR, else $XDG_CACHE_HOME/headinfer, else ~/.cache/headinfer.
#pragma once

#include <string>

#include "backend/backend.hpp"

namespace headinfer {

// GB/s of copy_h2d_async over `bytes`-sized copies (the best of a few runs), from
// the backend's host memory (pinned on a GPU), or from plain pageable memory.
double measure_link_gbs(Backend& backend, size_t bytes = size_t{64} << 20, int runs = 4, bool pageable = false);

// GB/s of `copies` back-to-back copy_h2d_async of `bytes` each, issued together and
// waited on once (the engine's pattern: 4 MiB blocks issued ahead), best of `runs`.
double measure_link_stream_gbs(Backend& backend, size_t bytes = size_t{4} << 20, int copies = 64, int runs = 5);

// Device memory bandwidth as Backend::copy (device to device) achieves it: bytes
// read plus bytes written per second over a `bytes` copy, best of `runs`, timed by the
// backend's device timestamps where it has them (else with synchronize(), which adds
// the launch and the wait to each copy). The decode floor divides the bytes a token
// reads by this figure.
double measure_device_copy_gbs(Backend& backend, size_t bytes = size_t{256} << 20, int runs = 5);

// The cache file for a backend name ("" when no cache directory can be found).
std::string link_cache_path(const std::string& backend_name);

// The cached figure, else measures and caches it. Never fails for a missing or
// unwritable cache: it measures instead.
double link_gbs_cached(Backend& backend);
// The same for copies from pageable memory (a host pool pinned only in part).
double pageable_link_gbs_cached(Backend& backend);

}  // namespace headinfer
