// Host -> device copy bandwidth, the planner's main input: measured once per
// backend (large async copies from host-pool memory) and cached in
// $HEADINFER_CACHE_DIR, else $XDG_CACHE_HOME/headinfer, else ~/.cache/headinfer.
#pragma once

#include <string>

#include "backend/backend.hpp"

namespace headinfer {

// GB/s of copy_h2d_async over `bytes`-sized copies (the best of a few runs).
double measure_link_gbs(Backend& backend, size_t bytes = size_t{64} << 20, int runs = 4);

// The cache file for a backend name ("" when no cache directory can be found).
std::string link_cache_path(const std::string& backend_name);

// The cached figure, else measures and caches it. Never fails for a missing or
// unwritable cache: it measures instead.
double link_gbs_cached(Backend& backend);

}  // namespace headinfer
