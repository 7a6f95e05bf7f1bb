// The CUDA benchmarks' check of a CUDA / cuBLAS status: anything but success throws
// headinfer::Error naming the call and the status.
#pragma once

#include "headinfer/error.hpp"

#define BENCH_CHECK(call)                                                                                          \
  do {                                                                                                             \
    auto bench_rc_ = (call);                                                                                       \
    if (static_cast<int>(bench_rc_) != 0) HI_FAIL(#call << " failed with status " << static_cast<int>(bench_rc_)); \
  } while (0)
