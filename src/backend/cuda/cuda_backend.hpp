// The CUDA backend: every Backend op on device memory of one GPU. Activations,
// weights and KV slabs are device pointers from alloc(); weights keep their stored
// dtype (F32/F16/BF16; Q8_0 is dequantized to F32 by prepare()).
// This header needs no CUDA headers, so the CLI can include it in any TU of a
// CUDA-enabled build (guard the include with HEADINFER_HAVE_CUDA).
#pragma once

#include <memory>
#include <string>

#include "backend/backend.hpp"
#include "backend/cuda/pinned_host.hpp"

namespace headinfer {

// True when a CUDA driver and at least one device are usable; never throws.
bool cuda_available();

// Throws headinfer::Error when the device cannot be used.
std::unique_ptr<Backend> make_cuda_backend(int device = 0);

// Pinned host memory a CUDA backend holds (live bytes and blocks, time spent
// pinning). Throws Error for another backend.
cuda::PinnedStats cuda_pinned_stats(const Backend& backend);

// Which attention kernels a CUDA backend uses (cuDNN's fused attention, or why not);
// empty for another backend.
std::string cuda_attention_path(const Backend& backend);

}  // namespace headinfer
