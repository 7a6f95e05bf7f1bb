// PLACEHOLDER until the tuned kernels land.
#include "backend/cpu/matmul.hpp"
#include <vector>
namespace headinfer {
void cpu_matmul(ThreadPool& pool, const float* x, int n, const Mat& w, const Mat* bias, float* out) {
  std::vector<float> b(bias ? static_cast<size_t>(w.rows) : 0);
  if (bias) to_f32(bias->dtype, bias->data, b.data(), w.rows);
  const size_t rb = dtype_bytes(w.dtype, w.cols);
  pool.parallel_for(w.rows, [&](int64_t r0, int64_t r1) {
    std::vector<float> row(static_cast<size_t>(w.cols));
    for (int64_t r = r0; r < r1; ++r) {
      to_f32(w.dtype, static_cast<const uint8_t*>(w.data) + rb * r, row.data(), w.cols);
      for (int i = 0; i < n; ++i) {
        const float* xi = x + static_cast<int64_t>(i) * w.cols;
        float s = 0;
        for (int64_t j = 0; j < w.cols; ++j) s += xi[j] * row[j];
        out[static_cast<int64_t>(i) * w.rows + r] = s + (bias ? b[r] : 0.f);
      }
    }
  });
}
}  // namespace headinfer
