// A persistent pool for the data-parallel loops of the CPU backend. Decode calls
// it a few hundred times per token, so a call must cost microseconds: workers are
// created once, spin briefly on an epoch counter after each job (the next matmul
// usually follows within tens of microseconds), then sleep on a futex.
// The calling thread takes part in every job, so a pool of size 1 has no threads.
#pragma once

#include <atomic>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace headinfer {

class ThreadPool {
 public:
  // n_threads <= 0: std::thread::hardware_concurrency(). spin_us: how long an idle
  // worker polls for the next job before sleeping.
  explicit ThreadPool(int n_threads = 0, int spin_us = 200);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // Threads that run a job, the caller included.
  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls fn(begin, end) on at most size() contiguous, near-equal pieces covering
  // [0, n). The first exception thrown by any piece is rethrown here once every
  // piece has stopped; pieces not yet started are then skipped.
  template <class F>
  void parallel_for(int64_t n, F&& fn) {
    if (n <= 0) return;
    int64_t pieces = n < size() ? n : size();
    run_chunks(n, pieces, /*grain=*/0, &invoke<std::remove_reference_t<F>>, &fn);
  }

  // Same, with pieces of `grain` items (the last one shorter) handed out on demand,
  // which balances load when threads run at different speeds (a shared machine).
  template <class F>
  void parallel_for(int64_t n, int64_t grain, F&& fn) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    run_chunks(n, (n + grain - 1) / grain, grain, &invoke<std::remove_reference_t<F>>, &fn);
  }

 private:
  using Call = void (*)(void* ctx, int64_t begin, int64_t end);
  template <class F>
  static void invoke(void* ctx, int64_t b, int64_t e) {
    (*static_cast<F*>(ctx))(b, e);
  }

  // grain == 0: n_chunks near-equal pieces; otherwise pieces of `grain`.
  void run_chunks(int64_t n, int64_t n_chunks, int64_t grain, Call call, void* ctx);
  void work_on_job();
  void worker_main();

  struct Job {
    Call call = nullptr;
    void* ctx = nullptr;
    int64_t n = 0, n_chunks = 0, grain = 0;
    std::atomic<int64_t> next{0};
    std::atomic<bool> failed{false};
    std::mutex err_mu;
    std::exception_ptr err;
  };

  std::vector<std::thread> workers_;
  int spin_us_;
  Job job_;
  std::mutex submit_mu_;                 // one job at a time
  alignas(64) std::atomic<uint32_t> epoch_{0};
  alignas(64) std::atomic<uint32_t> busy_{0};  // workers still inside the current job
  std::atomic<bool> stop_{false};
};

}  // namespace headinfer
