// A grow-only, 64-byte aligned float buffer per thread and per purpose (Tag): kernels
// reuse it across calls, so steady-state calls do not allocate. Distinct tags give
// distinct buffers, so one kernel's scratch never aliases another's.
#pragma once

#include <cstdlib>

#include "headinfer/error.hpp"

namespace headinfer {

template <typename Tag>
float* thread_scratch(size_t floats, const char* what) {
  struct Buf {
    float* p = nullptr;
    size_t n = 0;
    ~Buf() { std::free(p); }
  };
  thread_local Buf buf;
  if (buf.n < floats) {
    std::free(buf.p);
    buf.p = nullptr;
    buf.n = 0;
    const size_t bytes = (floats * sizeof(float) + 63) / 64 * 64;
    buf.p = static_cast<float*>(std::aligned_alloc(64, bytes));
    if (!buf.p) HI_FAIL(what << ": cannot allocate " << bytes << " bytes of scratch");
    buf.n = floats;
  }
  return buf.p;
}

}  // namespace headinfer
