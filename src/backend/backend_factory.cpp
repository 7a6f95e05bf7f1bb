#include "backend/backend_factory.hpp"

#include "headinfer/error.hpp"
#ifdef HEADINFER_HAVE_CUDA
#include "backend/cuda/cuda_backend.hpp"
#endif

namespace headinfer {

bool gpu_backend_available() {
#ifdef HEADINFER_HAVE_CUDA
  return cuda_available();
#else
  return false;
#endif
}

std::unique_ptr<Backend> make_backend(const std::string& name, int n_threads) {
  if (name == "cpu") return make_cpu_backend(n_threads);
  if (name == "cuda" || name == "auto") {
#ifdef HEADINFER_HAVE_CUDA
    if (cuda_available()) return make_cuda_backend(0);
    HI_CHECK(name == "auto", "--backend cuda: no usable CUDA device or driver found");
#else
    HI_CHECK(name == "auto", "--backend cuda: this build has no CUDA backend (configure with the 'cuda' preset)");
#endif
    return make_cpu_backend(n_threads);
  }
  HI_FAIL("--backend: unknown backend '" << name << "' (expected auto, cpu or cuda)");
}

}  // namespace headinfer
