// Host-to-device copies from pageable memory (the part of the KV pool that a budget
// leaves unpinned, docs/offload.md): the driver stages such copies itself at about
// 7 GB/s on the H200. Here host threads copy the source into a few pinned slots in
// parallel while the copy engine drains the previous slot, so the link runs near its
// pinned rate. The source is read when the copy is issued, as the driver's own path
// reads it; the copies into the device stay in stream order.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <memory>
#include <vector>

#include "common/thread_pool.hpp"

namespace headinfer::cuda {

class PageableStager {
 public:
  PageableStager();
  ~PageableStager();
  PageableStager(const PageableStager&) = delete;
  PageableStager& operator=(const PageableStager&) = delete;

  // Whether `p` is host memory CUDA does not know as pinned (or mapped).
  static bool is_pageable(const void* p);

  // Copies rows x width bytes from src (rows src_pitch apart, pageable) to dst on the
  // device (rows dst_pitch apart) on `stream`; a 2-D copy's rows must fit a slot.
  // Returns once the source has been read; the device side completes in stream order.
  void h2d(cudaStream_t stream, void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width,
           size_t rows);

  static constexpr size_t kSlotBytes = size_t{8} << 20;
  static constexpr int kSlots = 4;

 private:
  struct Slot {
    void* host = nullptr;
    cudaEvent_t drained = nullptr;  // the last copy out of this slot is done
  };
  std::vector<Slot> slots_;
  std::unique_ptr<ThreadPool> pool_;
};

}  // namespace headinfer::cuda
