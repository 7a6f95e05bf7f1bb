// A synthetic KV fill: the state a prefill of `context` tokens leaves, with random
// keys and values instead of computed ones, written straight into the slabs (device
// slabs by upload, offloaded ones in place in the host pool). It lets decode be
// measured at contexts whose real prefill would take hours (1M+ tokens): decode then
// moves and reads exactly the bytes it would after a prefill; only the values (and so
// the logits) differ. Benchmarks only: never a substitute for a prefill's results.
#pragma once

#include <cstddef>
#include <cstdint>

#include "backend/backend.hpp"
#include "runtime/executor.hpp"

namespace headinfer {

// Random values in about [-2, 2] as `dtype` (F32, F16 or BF16) over `bytes`, on
// several threads; the same seed gives the same bytes.
void fill_random_values(void* dst, size_t bytes, DType dtype, uint64_t seed);

// Fills tokens [0, context) of every slab of `exec` (made for the model of `cfg`) and sets the KV length to `context`.
void synthetic_kv_fill(Backend& backend, Executor& exec, const ModelConfig& cfg, int64_t context, uint64_t seed = 77);

// Sets the KV length back to `context` after decode steps appended past it: the
// slabs still hold the fill, so the next decode sees the same state again.
void rewind_kv(Executor& exec, int64_t context);

}  // namespace headinfer
