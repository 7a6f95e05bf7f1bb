#include "common/thread_pool.hpp"

#include <chrono>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define HI_CPU_RELAX() _mm_pause()
#else
#define HI_CPU_RELAX() ((void)0)
#endif

namespace headinfer {

namespace {
// A job that starts another parallel_for from inside a piece runs it inline:
// waiting on the pool from a worker would deadlock.
thread_local bool t_inside_job = false;

// Polls pred for up to spin_us microseconds; true if it became true.
template <class Pred>
bool spin_until(Pred pred, int spin_us) {
  if (pred()) return true;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::microseconds(spin_us);
  for (;;) {
    // Reading the clock costs ~20 ns; checking it every 64 polls keeps the
    // reaction to a new job well under a microsecond.
    for (int i = 0; i < 64; ++i) {
      if (pred()) return true;
      HI_CPU_RELAX();
    }
    if (std::chrono::steady_clock::now() >= deadline) return pred();
  }
}
}  // namespace

ThreadPool::ThreadPool(int n_threads, int spin_us) : spin_us_(spin_us < 0 ? 0 : spin_us) {
  if (n_threads <= 0) n_threads = static_cast<int>(std::thread::hardware_concurrency());
  if (n_threads <= 0) n_threads = 1;
  workers_.reserve(static_cast<size_t>(n_threads - 1));
  for (int i = 1; i < n_threads; ++i) workers_.emplace_back([this] { worker_main(); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true, std::memory_order_relaxed);
  epoch_.fetch_add(1, std::memory_order_release);
  epoch_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::work_on_job() {
  Job& j = job_;
  t_inside_job = true;
  for (;;) {
    if (j.failed.load(std::memory_order_relaxed)) break;
    int64_t c = j.next.fetch_add(1, std::memory_order_relaxed);
    if (c >= j.n_chunks) break;
    int64_t b, e;
    if (j.grain == 0) {
      b = j.n * c / j.n_chunks;
      e = j.n * (c + 1) / j.n_chunks;
    } else {
      b = c * j.grain;
      e = b + j.grain < j.n ? b + j.grain : j.n;
    }
    try {
      j.call(j.ctx, b, e);
    } catch (...) {
      std::lock_guard<std::mutex> lk(j.err_mu);
      if (!j.err) j.err = std::current_exception();
      j.failed.store(true, std::memory_order_relaxed);
    }
  }
  t_inside_job = false;
}

void ThreadPool::worker_main() {
  uint32_t seen = 0;
  for (;;) {
    if (!spin_until([&] { return epoch_.load(std::memory_order_acquire) != seen; }, spin_us_)) {
      epoch_.wait(seen, std::memory_order_acquire);
      continue;  // re-check: wait() may return spuriously
    }
    seen = epoch_.load(std::memory_order_acquire);
    if (stop_.load(std::memory_order_relaxed)) return;
    work_on_job();
    if (busy_.fetch_sub(1, std::memory_order_acq_rel) == 1) busy_.notify_one();
  }
}

void ThreadPool::run_chunks(int64_t n, int64_t n_chunks, int64_t grain, Call call, void* ctx) {
  if (n_chunks <= 1 || workers_.empty() || t_inside_job) {
    for (int64_t c = 0; c < n_chunks; ++c) {
      int64_t b = grain == 0 ? n * c / n_chunks : c * grain;
      int64_t e = grain == 0 ? n * (c + 1) / n_chunks : (b + grain < n ? b + grain : n);
      call(ctx, b, e);
    }
    return;
  }
  std::lock_guard<std::mutex> lk(submit_mu_);
  Job& j = job_;
  j.call = call;
  j.ctx = ctx;
  j.n = n;
  j.n_chunks = n_chunks;
  j.grain = grain;
  j.next.store(0, std::memory_order_relaxed);
  j.failed.store(false, std::memory_order_relaxed);
  j.err = nullptr;
  busy_.store(static_cast<uint32_t>(workers_.size()), std::memory_order_relaxed);
  epoch_.fetch_add(1, std::memory_order_release);  // publishes the job
  epoch_.notify_all();

  work_on_job();

  // Workers finish at about the same time as the caller, so spin before sleeping.
  for (;;) {
    if (spin_until([&] { return busy_.load(std::memory_order_acquire) == 0; }, spin_us_)) break;
    uint32_t b = busy_.load(std::memory_order_acquire);
    if (b == 0) break;
    busy_.wait(b, std::memory_order_acquire);
  }
  if (j.err) {
    std::exception_ptr e = j.err;
    j.err = nullptr;
    std::rethrow_exception(e);
  }
}

}  // namespace headinfer
