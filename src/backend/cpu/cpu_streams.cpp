#include "backend/cpu/cpu_streams.hpp"

#include <chrono>
#include <cstring>

#include "headinfer/error.hpp"

namespace headinfer {

CpuStreams::CpuStreams(int copy_delay_us) : copy_delay_us_(copy_delay_us) {
  h2d_.thread = std::thread([this] { run(h2d_); });
  d2h_.thread = std::thread([this] { run(d2h_); });
}

CpuStreams::~CpuStreams() {
  {
    std::unique_lock<std::mutex> lk(mu_);
    // Work already issued completes first: a destination may still be read after.
    cv_.wait(lk, [&] { return h2d_.tasks.empty() && d2h_.tasks.empty() && !h2d_.busy && !d2h_.busy; });
    stop_ = true;
  }
  cv_.notify_all();
  h2d_.thread.join();
  d2h_.thread.join();
}

CpuStreams::Queue& CpuStreams::queue(Stream s) {
  HI_CHECK(s != Stream::Compute, "cpu streams: the compute stream has no queue");
  return s == Stream::H2D ? h2d_ : d2h_;
}

bool CpuStreams::reached(uint64_t event, uint64_t generation) const {
  auto it = events_.find(event);
  return it == events_.end() || it->second.completed >= generation;
}

Event CpuStreams::create_event() {
  std::lock_guard<std::mutex> lk(mu_);
  const uint64_t id = next_event_++;
  events_.emplace(id, EventState{});
  return Event{id};
}

void CpuStreams::destroy_event(Event e) {
  std::lock_guard<std::mutex> lk(mu_);
  events_.erase(e.id);
}

void CpuStreams::record(Event e, Stream s) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = events_.find(e.id);
    HI_CHECK(it != events_.end(), "cpu streams: record on an unknown event " << e.id);
    const uint64_t gen = ++it->second.recorded;
    if (s == Stream::Compute) {
      // Compute ops ran synchronously on this thread: the point is reached now.
      it->second.completed = gen;
    } else {
      Task t;
      t.kind = Task::Signal;
      t.event = e.id;
      t.generation = gen;
      queue(s).tasks.push_back(t);
    }
  }
  cv_.notify_all();
}

void CpuStreams::wait(Stream s, Event e) {
  std::unique_lock<std::mutex> lk(mu_);
  auto it = events_.find(e.id);
  if (it == events_.end() || it->second.recorded == 0) return;
  const uint64_t gen = it->second.recorded;
  if (s == Stream::Compute) {
    cv_.wait(lk, [&] { return reached(e.id, gen); });
    return;
  }
  Task t;
  t.kind = Task::Wait;
  t.event = e.id;
  t.generation = gen;
  queue(s).tasks.push_back(t);
  lk.unlock();
  cv_.notify_all();
}

void CpuStreams::sync(Event e) {
  std::unique_lock<std::mutex> lk(mu_);
  auto it = events_.find(e.id);
  if (it == events_.end()) return;
  const uint64_t gen = it->second.recorded;
  cv_.wait(lk, [&] { return reached(e.id, gen); });
}

void CpuStreams::copy(Stream s, void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width,
                      size_t rows) {
  Task t;
  t.kind = Task::Copy;
  t.dst = static_cast<uint8_t*>(dst);
  t.src = static_cast<const uint8_t*>(src);
  t.dst_pitch = dst_pitch;
  t.src_pitch = src_pitch;
  t.width = width;
  t.rows = rows;
  {
    std::lock_guard<std::mutex> lk(mu_);
    queue(s).tasks.push_back(t);
  }
  cv_.notify_all();
}

void CpuStreams::drain() {
  std::unique_lock<std::mutex> lk(mu_);
  cv_.wait(lk, [&] { return h2d_.tasks.empty() && d2h_.tasks.empty() && !h2d_.busy && !d2h_.busy; });
}

void CpuStreams::run(Queue& q) {
  std::unique_lock<std::mutex> lk(mu_);
  for (;;) {
    cv_.wait(lk, [&] { return stop_ || !q.tasks.empty(); });
    if (q.tasks.empty()) return;  // stop_ and nothing left
    Task t = q.tasks.front();
    q.tasks.pop_front();
    q.busy = true;
    switch (t.kind) {
      case Task::Wait:
        cv_.wait(lk, [&] { return reached(t.event, t.generation); });
        break;
      case Task::Signal: {
        auto it = events_.find(t.event);
        if (it != events_.end() && it->second.completed < t.generation) it->second.completed = t.generation;
        break;
      }
      case Task::Copy:
        lk.unlock();
        if (copy_delay_us_ > 0) std::this_thread::sleep_for(std::chrono::microseconds(copy_delay_us_));
        for (size_t r = 0; r < t.rows; ++r) std::memcpy(t.dst + r * t.dst_pitch, t.src + r * t.src_pitch, t.width);
        lk.lock();
        break;
    }
    q.busy = false;
    cv_.notify_all();
  }
}

}  // namespace headinfer
