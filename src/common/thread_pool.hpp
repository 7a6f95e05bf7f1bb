// PLACEHOLDER until the tuned pool lands: runs parallel_for on std::thread per call.
#pragma once
#include <cstdint>
#include <thread>
#include <vector>
#include <algorithm>
namespace headinfer {
class ThreadPool {
 public:
  explicit ThreadPool(int n = 0) : n_(n > 0 ? n : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()))) {}
  int size() const { return n_; }
  template <class F>
  void parallel_for(int64_t n, F&& fn) {
    if (n <= 0) return;
    int k = static_cast<int>(std::min<int64_t>(n_, n));
    if (k == 1) { fn(int64_t{0}, n); return; }
    std::vector<std::thread> ts;
    for (int i = 0; i < k; ++i) ts.emplace_back([&, i] { fn(n * i / k, n * (i + 1) / k); });
    for (auto& t : ts) t.join();
  }
 private:
  int n_;
};
}  // namespace headinfer
