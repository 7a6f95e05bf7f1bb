// The CUDA backend's copy streams and events (docs/offload.md). Compute is the
// backend's existing stream (every kernel and cuBLAS call); H2D and D2H are two more
// non-blocking streams, so copies run on the copy engines while kernels run. An
// Event is a cudaEvent_t without timing, reusable: record() moves it to the newest
// point of a stream, and waiting on one never recorded waits for nothing (CUDA's
// own rule, the one the Backend interface promises).
//
// Test knobs, read when the streams are made (microseconds, 0: off), so a schedule
// missing a wait shows up as different bits instead of passing by luck:
//   HEADINFER_CUDA_COPY_DELAY_US     each async copy starts this late on its stream
//   HEADINFER_CUDA_COMPUTE_DELAY_US  compute work issued after a wait(Compute, e)
//                                    starts this late
// H2D copies from pageable host memory go through PageableStager (pinned slots filled
// by host threads): 36.9 GB/s against the driver's own staging at 8.1 GB/s on an H200
// (docs/offload.md). HEADINFER_CUDA_STAGED_PAGEABLE=0 leaves them to the driver.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "backend/backend.hpp"
#include "backend/cuda/pageable_stager.hpp"

namespace headinfer::cuda {

class CudaStreams {
 public:
  explicit CudaStreams(cudaStream_t compute);
  ~CudaStreams();
  CudaStreams(const CudaStreams&) = delete;
  CudaStreams& operator=(const CudaStreams&) = delete;

  cudaStream_t stream(Stream s) const;

  Event create_event(bool timing = false);  // timing: cudaEventElapsedTime can read it
  double elapsed_seconds(Event from, Event to);  // waits for `to`
  void destroy_event(Event e);
  void record(Event e, Stream s);
  void wait(Stream s, Event e);
  void sync(Event e);

  // cudaMemcpyAsync / cudaMemcpy2DAsync on the H2D or D2H stream.
  void copy(Stream s, void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width, size_t rows);
  // Waits for all three streams.
  void synchronize_all();

 private:
  cudaEvent_t event(Event e);  // under mu_

  void delay(cudaStream_t s, int us);

  cudaStream_t compute_, h2d_ = nullptr, d2h_ = nullptr;
  int copy_delay_us_ = 0, compute_delay_us_ = 0;
  bool stage_pageable_ = true;
  std::unique_ptr<PageableStager> stager_;  // made on the first pageable H2D copy
  std::mutex mu_;
  std::vector<cudaEvent_t> events_;  // [id - 1]; nullptr once destroyed
  std::vector<uint64_t> free_ids_;
};

}  // namespace headinfer::cuda
