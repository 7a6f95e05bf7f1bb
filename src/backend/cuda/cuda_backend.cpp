// The CUDA backend's entry points (cuda_backend.hpp); the class is in
// cuda_backend_impl.hpp, its attention in cuda_attention.cpp.
#include "backend/cuda/cuda_backend_impl.hpp"

namespace headinfer {

using cuda_backend_detail::CudaBackend;

std::string cuda_attention_path(const Backend& backend) {
  const auto* b = dynamic_cast<const CudaBackend*>(&backend);
  return b ? b->attention_path() : std::string();
}

bool cuda_available() {
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return count > 0;
}

std::unique_ptr<Backend> make_cuda_backend(int device) { return std::make_unique<CudaBackend>(device); }

cuda::PinnedStats cuda_pinned_stats(const Backend& backend) {
  const auto* b = dynamic_cast<const CudaBackend*>(&backend);
  HI_CHECK(b != nullptr, "cuda_pinned_stats: " << backend.name() << " is not a CUDA backend");
  return b->pinned_stats();
}

}  // namespace headinfer
