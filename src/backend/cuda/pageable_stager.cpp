#include "backend/cuda/pageable_stager.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <thread>

#include "backend/cuda/cuda_check.hpp"
#include "headinfer/error.hpp"

namespace headinfer::cuda {

PageableStager::PageableStager() {
  // One memcpy thread moves ~5-10 GB/s; the link takes ~55: up to 8 threads, and a
  // short spin, since the next piece follows within microseconds.
  const int threads = static_cast<int>(std::clamp(std::thread::hardware_concurrency() / 2, 1u, 8u));
  pool_ = std::make_unique<ThreadPool>(threads, /*spin_us=*/20);
  try {
    for (int i = 0; i < kSlots; ++i) {
      Slot s;
      HI_CUDA_CHECK(cudaHostAlloc(&s.host, kSlotBytes, cudaHostAllocDefault));
      const cudaError_t e = cudaEventCreateWithFlags(&s.drained, cudaEventDisableTiming);
      if (e != cudaSuccess) {
        cudaFreeHost(s.host);
        HI_CUDA_CHECK(e);
      }
      slots_.push_back(s);
    }
  } catch (...) {
    for (Slot& s : slots_) {
      cudaEventDestroy(s.drained);
      cudaFreeHost(s.host);
    }
    throw;
  }
}

PageableStager::~PageableStager() {
  for (Slot& s : slots_) {
    cudaEventSynchronize(s.drained);
    cudaEventDestroy(s.drained);
    cudaFreeHost(s.host);
  }
}

bool PageableStager::is_pageable(const void* p) {
  cudaPointerAttributes a{};
  if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
    cudaGetLastError();  // older drivers flag unknown host pointers as an error: pageable
    return true;
  }
  return a.type == cudaMemoryTypeUnregistered;
}

void PageableStager::h2d(cudaStream_t stream, void* dst, size_t dst_pitch, const void* src, size_t src_pitch,
                         size_t width, size_t rows) {
  if (width == 0 || rows == 0) return;
  if (rows == 1) dst_pitch = src_pitch = width;
  // Contiguous copies go in slot-sized pieces; 2-D ones in whole rows per slot.
  const bool flat = width == src_pitch && width == dst_pitch;
  HI_CHECK(flat || width <= kSlotBytes, "cuda backend: a staged 2-D copy row of "
                                            << width << " bytes exceeds the " << kSlotBytes << "-byte staging slot");
  // The source is read now, on this thread. What writes pageable host memory is done by
  // then: the CPU's own writes, and D2H copies, which CUDA completes before returning
  // when their destination is pageable. The device side keeps stream order: each slot's
  // copy is queued behind the stream's waits (a ping-pong buffer still being read).
  const auto* s = static_cast<const uint8_t*>(src);
  auto* d = static_cast<uint8_t*>(dst);
  const size_t total = flat ? width * rows : rows;  // bytes, or rows
  const size_t per_slot = flat ? kSlotBytes : kSlotBytes / width;
  size_t next = 0;
  for (size_t done = 0; done < total; done += per_slot, next = (next + 1) % slots_.size()) {
    const size_t n = std::min(per_slot, total - done);
    Slot& slot = slots_[next];
    HI_CUDA_CHECK(cudaEventSynchronize(slot.drained));
    auto* h = static_cast<uint8_t*>(slot.host);
    if (flat) {
      // Threads take 1 MiB pieces of the slot.
      const int64_t grains = static_cast<int64_t>((n + (size_t{1} << 20) - 1) >> 20);
      pool_->parallel_for(grains, 1, [&](int64_t b, int64_t e) {
        const size_t lo = static_cast<size_t>(b) << 20, hi = std::min(n, static_cast<size_t>(e) << 20);
        std::memcpy(h + lo, s + done + lo, hi - lo);
      });
      HI_CUDA_CHECK(cudaMemcpyAsync(d + done, h, n, cudaMemcpyHostToDevice, stream));
    } else {
      pool_->parallel_for(static_cast<int64_t>(n), [&](int64_t b, int64_t e) {
        for (int64_t r = b; r < e; ++r)
          std::memcpy(h + static_cast<size_t>(r) * width, s + (done + static_cast<size_t>(r)) * src_pitch, width);
      });
      HI_CUDA_CHECK(cudaMemcpy2DAsync(d + done * dst_pitch, dst_pitch, h, width, width, n, cudaMemcpyHostToDevice,
                                      stream));
    }
    HI_CUDA_CHECK(cudaEventRecord(slot.drained, stream));
  }
}

}  // namespace headinfer::cuda
