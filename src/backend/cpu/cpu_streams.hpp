// The CPU backend's streams: compute is the calling thread (ops are synchronous),
// and each copy stream is a thread that runs its copies, event records and event
// waits in issue order. So the executor's schedule really runs concurrently on
// the CPU: a missing event wait shows up as a wrong result, not as a hang-free pass.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "backend/backend.hpp"

namespace headinfer {

class CpuStreams {
 public:
  explicit CpuStreams(int copy_delay_us);
  ~CpuStreams();
  CpuStreams(const CpuStreams&) = delete;
  CpuStreams& operator=(const CpuStreams&) = delete;

  Event create_event();
  void destroy_event(Event e);
  void record(Event e, Stream s);
  void wait(Stream s, Event e);
  void sync(Event e);
  // Rows of `width` bytes at the given pitches, run later on the stream's thread.
  void copy(Stream s, void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width, size_t rows);
  // Returns once every copy stream has run all it was given.
  void drain();

 private:
  struct Task {
    enum Kind { Copy, Signal, Wait } kind = Copy;
    uint8_t* dst = nullptr;
    const uint8_t* src = nullptr;
    size_t dst_pitch = 0, src_pitch = 0, width = 0, rows = 0;
    uint64_t event = 0, generation = 0;
  };
  struct EventState {
    uint64_t recorded = 0;   // generation of the latest record
    uint64_t completed = 0;  // newest generation the stream reached
  };
  struct Queue {
    std::deque<Task> tasks;
    bool busy = false;
    std::thread thread;
  };

  Queue& queue(Stream s);
  void run(Queue& q);
  bool reached(uint64_t event, uint64_t generation) const;  // under mu_

  const int copy_delay_us_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  uint64_t next_event_ = 1;
  std::unordered_map<uint64_t, EventState> events_;
  Queue h2d_, d2h_;
};

}  // namespace headinfer
