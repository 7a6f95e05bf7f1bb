#include "backend/cuda/streams.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <thread>

#include "backend/cuda/cuda_check.hpp"
#include "headinfer/error.hpp"

namespace headinfer::cuda {
namespace {

int env_us(const char* name) {
  const char* e = std::getenv(name);
  return e ? std::max(0, std::atoi(e)) : 0;
}

void CUDART_CB sleep_host(void* us) {
  std::this_thread::sleep_for(std::chrono::microseconds(reinterpret_cast<intptr_t>(us)));
}

}  // namespace

void CudaStreams::delay(cudaStream_t s, int us) {
  if (us > 0) HI_CUDA_CHECK(cudaLaunchHostFunc(s, sleep_host, reinterpret_cast<void*>(static_cast<intptr_t>(us))));
}

CudaStreams::CudaStreams(cudaStream_t compute)
    : compute_(compute),
      copy_delay_us_(env_us("HEADINFER_CUDA_COPY_DELAY_US")),
      compute_delay_us_(env_us("HEADINFER_CUDA_COMPUTE_DELAY_US")) {
  if (const char* e = std::getenv("HEADINFER_CUDA_STAGED_PAGEABLE")) stage_pageable_ = std::atoi(e) != 0;
  HI_CUDA_CHECK(cudaStreamCreateWithFlags(&h2d_, cudaStreamNonBlocking));
  const cudaError_t e = cudaStreamCreateWithFlags(&d2h_, cudaStreamNonBlocking);
  if (e != cudaSuccess) {
    cudaStreamDestroy(h2d_);
    HI_CUDA_CHECK(e);
  }
}

CudaStreams::~CudaStreams() {
  stager_.reset();  // waits for its slots' last copies
  cudaStreamSynchronize(h2d_);
  cudaStreamSynchronize(d2h_);
  for (cudaEvent_t ev : events_)
    if (ev) cudaEventDestroy(ev);
  cudaStreamDestroy(h2d_);
  cudaStreamDestroy(d2h_);
}

cudaStream_t CudaStreams::stream(Stream s) const {
  switch (s) {
    case Stream::Compute: return compute_;
    case Stream::H2D: return h2d_;
    case Stream::D2H: return d2h_;
  }
  HI_FAIL("cuda backend: unknown stream " << static_cast<int>(s));
}

cudaEvent_t CudaStreams::event(Event e) {
  HI_CHECK(e.id >= 1 && e.id <= events_.size() && events_[e.id - 1] != nullptr,
           "cuda backend: event " << e.id << " does not exist (destroyed, or made by another backend)");
  return events_[e.id - 1];
}

Event CudaStreams::create_event(bool timing) {
  cudaEvent_t ev = nullptr;
  HI_CUDA_CHECK(cudaEventCreateWithFlags(&ev, timing ? cudaEventDefault : cudaEventDisableTiming));
  std::lock_guard<std::mutex> lk(mu_);
  if (!free_ids_.empty()) {
    const uint64_t id = free_ids_.back();
    free_ids_.pop_back();
    events_[id - 1] = ev;
    return Event{id};
  }
  events_.push_back(ev);
  return Event{events_.size()};
}

void CudaStreams::destroy_event(Event e) {
  if (!e) return;
  cudaEvent_t ev = nullptr;
  {
    std::lock_guard<std::mutex> lk(mu_);
    ev = event(e);
    events_[e.id - 1] = nullptr;
    free_ids_.push_back(e.id);
  }
  // Destroying an event whose record is pending is allowed: CUDA releases it once
  // the record completes.
  HI_CUDA_CHECK(cudaEventDestroy(ev));
}

void CudaStreams::record(Event e, Stream s) {
  cudaEvent_t ev;
  {
    std::lock_guard<std::mutex> lk(mu_);
    ev = event(e);
  }
  HI_CUDA_CHECK(cudaEventRecord(ev, stream(s)));
}

void CudaStreams::wait(Stream s, Event e) {
  cudaEvent_t ev;
  {
    std::lock_guard<std::mutex> lk(mu_);
    ev = event(e);
  }
  HI_CUDA_CHECK(cudaStreamWaitEvent(stream(s), ev, 0));
  if (s == Stream::Compute) delay(compute_, compute_delay_us_);
}

void CudaStreams::sync(Event e) {
  cudaEvent_t ev;
  {
    std::lock_guard<std::mutex> lk(mu_);
    ev = event(e);
  }
  HI_CUDA_CHECK(cudaEventSynchronize(ev));
}

double CudaStreams::elapsed_seconds(Event from, Event to) {
  cudaEvent_t a, b;
  {
    std::lock_guard<std::mutex> lk(mu_);
    a = event(from);
    b = event(to);
  }
  HI_CUDA_CHECK(cudaEventSynchronize(b));
  float ms = 0;
  HI_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
  return ms * 1e-3;
}

void CudaStreams::copy(Stream s, void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width,
                       size_t rows) {
  HI_CHECK(s == Stream::H2D || s == Stream::D2H, "cuda backend: async copies run on the h2d or d2h stream, not "
                                                     << stream_name(s));
  if (width == 0 || rows == 0) return;
  const cudaMemcpyKind kind = s == Stream::H2D ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost;
  delay(stream(s), copy_delay_us_);
  const bool flat = rows == 1 || (width == dst_pitch && width == src_pitch);
  if (s == Stream::H2D && stage_pageable_ && (flat || width <= PageableStager::kSlotBytes) &&
      PageableStager::is_pageable(src)) {
    if (!stager_) stager_ = std::make_unique<PageableStager>();
    stager_->h2d(h2d_, dst, dst_pitch, src, src_pitch, width, rows);
    return;
  }
  if (flat) {
    HI_CUDA_CHECK(cudaMemcpyAsync(dst, src, width * rows, kind, stream(s)));
    return;
  }
  HI_CHECK(width <= dst_pitch && width <= src_pitch,
           "cuda backend: 2-D copy rows of " << width << " bytes exceed the pitch (" << dst_pitch << ", " << src_pitch
                                             << ")");
  HI_CUDA_CHECK(cudaMemcpy2DAsync(dst, dst_pitch, src, src_pitch, width, rows, kind, stream(s)));
}

void CudaStreams::synchronize_all() {
  HI_CUDA_CHECK(cudaStreamSynchronize(h2d_));
  HI_CUDA_CHECK(cudaStreamSynchronize(d2h_));
  HI_CUDA_CHECK(cudaStreamSynchronize(compute_));
}

}  // namespace headinfer::cuda
