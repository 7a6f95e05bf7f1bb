// Chooses a backend by name: "cpu", "cuda", or "auto" (CUDA when this build has it
// and a device answers, else CPU).
#pragma once

#include <memory>
#include <string>

#include "backend/backend.hpp"

namespace headinfer {

bool gpu_backend_available();
std::unique_ptr<Backend> make_backend(const std::string& name, int n_threads = 0);

}  // namespace headinfer
