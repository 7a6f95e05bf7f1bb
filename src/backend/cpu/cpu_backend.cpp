// The CPU backend: the reference every other backend is checked against, and a
// usable engine on its own. Ops are written for clarity first; the heavy one
// (matmul) goes through the tuned kernels in matmul.cpp.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <thread>

#include "backend/backend.hpp"
#include "backend/cpu/attention_cpu.hpp"
#include "backend/cpu/cpu_streams.hpp"
#include "backend/cpu/device_arena.hpp"
#include "backend/cpu/matmul.hpp"
#include "common/half.hpp"
#include "common/thread_pool.hpp"
#include "headinfer/error.hpp"

namespace headinfer {
namespace {

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(const CpuBackendOptions& o) : pool_(o.n_threads), streams_(o.copy_delay_us) {
    arena_.set_limit(o.device_limit);
  }
  ~CpuBackend() override { streams_.drain(); }

  std::string name() const override { return "cpu"; }

  // "Device" memory is host memory counted by the emulated arena.
  void* alloc(size_t bytes) override { return arena_.alloc(bytes); }
  void free(void* p) override { arena_.free(p); }
  void upload(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void download(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void copy(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }

  Mat prepare(const Tensor& t, std::vector<std::shared_ptr<const void>>& keep_alive) override {
    Mat m = prepare_data(t, keep_alive);
    // Weights use mapped bytes, yet on a GPU they take device memory: the arena
    // counts them until the caller drops keep_alive.
    const int64_t bytes = DeviceArena::rounded(dtype_bytes(m.dtype, t.numel()));
    arena_.charge(bytes, "weights");
    DeviceArena* arena = &arena_;
    keep_alive.push_back(std::shared_ptr<const void>(nullptr, [arena, bytes](const void*) { arena->uncharge(bytes); }));
    return m;
  }

  Mat prepare_data(const Tensor& t, std::vector<std::shared_ptr<const void>>& keep_alive) {
    Mat m;
    m.rows = t.shape.size() == 1 ? 1 : t.shape[0];
    m.cols = t.shape.back();
    if (t.dtype == DType::Q8_0) {
      // Q8_0 is dequantized once here; the kernels read F32/F16/BF16.
      auto buf = std::shared_ptr<float[]>(new float[static_cast<size_t>(t.numel())]);
      to_f32(t.dtype, t.data, buf.get(), t.numel());
      keep_alive.push_back(std::shared_ptr<const void>(buf, buf.get()));
      m.dtype = DType::F32;
      m.data = buf.get();
      return m;
    }
    m.dtype = t.dtype;
    m.data = t.data;
    return m;
  }

  void embed(const int32_t* ids, int n, const Mat& table, float* out) override {
    const size_t row_bytes = dtype_bytes(table.dtype, table.cols);
    for (int i = 0; i < n; ++i) {
      HI_CHECK(ids[i] >= 0 && ids[i] < table.rows,
               "token id " << ids[i] << " is outside the vocabulary (0.." << table.rows - 1 << ")");
      auto* row = static_cast<const uint8_t*>(table.data) + row_bytes * static_cast<size_t>(ids[i]);
      to_f32(table.dtype, row, out + static_cast<size_t>(i) * table.cols, table.cols);
    }
  }

  void rmsnorm(const float* x, const Mat& w, float eps, int n, float* out) override {
    const int64_t d = w.cols;
    std::vector<float> wf(static_cast<size_t>(d));
    to_f32(w.dtype, w.data, wf.data(), d);
    pool_.parallel_for(n, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const float* xi = x + i * d;
        float* oi = out + i * d;
        double ss = 0;
        for (int64_t j = 0; j < d; ++j) ss += static_cast<double>(xi[j]) * xi[j];
        const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(d) + eps));
        for (int64_t j = 0; j < d; ++j) oi[j] = (xi[j] * inv) * wf[j];
      }
    });
  }

  void matmul(const float* x, int n, const Mat& w, const Mat* bias, float* out) override {
    cpu_matmul(pool_, x, n, w, bias, out);
  }

  void matmul_strided(const float* x, int64_t x_stride, int n, const Mat& w, const Mat* bias, float* out) override {
    cpu_matmul(pool_, x, n, w, bias, out, x_stride);
  }

  void rope(const RopeArgs& a) override {
    const int half = a.head_dim / 2;
    pool_.parallel_for(a.n_tokens, [&](int64_t b, int64_t e) {
      std::vector<float> cs(static_cast<size_t>(half)), sn(static_cast<size_t>(half));
      for (int64_t t = b; t < e; ++t) {
        // The angle is formed in double so positions in the millions keep their
        // low-order bits; sin/cos of the reduced angle are then exact enough in f32.
        const double pos = static_cast<double>(a.pos0 + t);
        for (int i = 0; i < half; ++i) {
          const double ang = std::fmod(pos * a.inv_freq[i], 2.0 * M_PI);
          cs[i] = static_cast<float>(std::cos(ang));
          sn[i] = static_cast<float>(std::sin(ang));
        }
        for (int h = 0; h < a.n_heads; ++h) {
          float* v = a.x + t * a.stride + static_cast<int64_t>(h) * a.head_dim;
          for (int i = 0; i < half; ++i) {
            const float x0 = v[i], x1 = v[i + half];
            v[i] = x0 * cs[i] - x1 * sn[i];
            v[i + half] = x1 * cs[i] + x0 * sn[i];
          }
        }
      }
    });
  }

  void attention(const AttnArgs& a) override {
    HI_CHECK(a.n_kv_heads >= 1, "attention: " << a.n_kv_heads << " KV heads");
    HI_CHECK(!a.out_rows, "attention: the CPU backend writes f32 rows only (gemm_rows_dtype is F32)");
    for (int j = 0; j < a.n_kv_heads; ++j) {
      const AttnArgs h = a.n_kv_heads == 1 ? a : attention_head(a, j);
      if (!a.accumulate) {
        cpu_attention(pool_, h);
        continue;
      }
      HI_CHECK(a.scratch && a.lse, "attention: accumulate needs lse and scratch");
      AttnArgs t = h;
      const int64_t row = int64_t{a.n_qh} * a.head_dim;
      t.out = a.scratch;
      t.out_stride = row;
      t.lse = a.scratch + a.n_q * row;
      cpu_attention(pool_, t);
      cpu_merge_attention(h.out, h.lse, t.out, t.lse, a.n_q, a.n_qh, a.head_dim, a.out_stride, row);
    }
  }

  void merge_attention(float* o_a, float* lse_a, const float* o_b, const float* lse_b, int n_q, int n_qh,
                       int head_dim, int64_t stride_a, int64_t stride_b) override {
    cpu_merge_attention(o_a, lse_a, o_b, lse_b, n_q, n_qh, head_dim, stride_a, stride_b);
  }

  void combine_attention(const float* part_o, const float* part_lse, int n_slots, int n_q, int n_qh, int head_dim,
                         float* out, int64_t out_stride, float* lse) override {
    cpu_combine_attention(pool_, part_o, part_lse, n_slots, n_q, n_qh, head_dim, out, out_stride, lse);
  }

  void swiglu(const float* gate, const float* up, int rows, int64_t cols, int64_t in_stride, float* out,
              int64_t out_stride) override {
    auto body = [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const float* g = gate + r * in_stride;
        const float* u = up + r * in_stride;
        float* o = out + r * out_stride;
        for (int64_t i = 0; i < cols; ++i) o[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
      }
    };
    // Waking the pool costs more than a decode step's few thousand elements.
    if (static_cast<int64_t>(rows) * cols < (int64_t{1} << 16)) body(0, rows);
    else pool_.parallel_for(rows, body);
  }

  void add(float* x, const float* y, int64_t n) override {
    for (int64_t i = 0; i < n; ++i) x[i] += y[i];
  }

  void store_kv(const float* src, int64_t src_stride, int n, int head_dim, DType kv_dtype, void* dst) override {
    for (int t = 0; t < n; ++t) {
      const float* s = src + t * src_stride;
      switch (kv_dtype) {
        case DType::F32:
          std::memcpy(static_cast<float*>(dst) + static_cast<int64_t>(t) * head_dim, s, sizeof(float) * head_dim);
          break;
        case DType::BF16: {
          auto* d = static_cast<uint16_t*>(dst) + static_cast<int64_t>(t) * head_dim;
          for (int j = 0; j < head_dim; ++j) d[j] = f32_to_bf16(s[j]);
          break;
        }
        case DType::F16: {
          auto* d = static_cast<uint16_t*>(dst) + static_cast<int64_t>(t) * head_dim;
          for (int j = 0; j < head_dim; ++j) d[j] = f32_to_f16(s[j]);
          break;
        }
        default: HI_FAIL("cpu backend: KV dtype " << dtype_name(kv_dtype) << " is not supported");
      }
    }
  }

  void store_kv_heads(const float* k, const float* v, int64_t src_stride, int n, int n_heads, int head_dim,
                      DType kv_dtype, void* const* dst_k, void* const* dst_v) override {
    for (int i = 0; i < n_heads; ++i) {
      store_kv(k + static_cast<int64_t>(i) * head_dim, src_stride, n, head_dim, kv_dtype, dst_k[i]);
      store_kv(v + static_cast<int64_t>(i) * head_dim, src_stride, n, head_dim, kv_dtype, dst_v[i]);
    }
  }

  void synchronize() override { streams_.drain(); }

  void* alloc_host(size_t bytes) override { return Backend::alloc_host(bytes); }
  void free_host(void* p) override { Backend::free_host(p); }
  Event create_event() override { return streams_.create_event(); }
  void destroy_event(Event e) override { streams_.destroy_event(e); }
  void record(Event e, Stream s) override { streams_.record(e, s); }
  void wait(Stream s, Event e) override { streams_.wait(s, e); }
  void sync(Event e) override { streams_.sync(e); }
  void copy_h2d_async(void* dst, const void* src, size_t bytes) override {
    streams_.copy(Stream::H2D, dst, bytes, src, bytes, bytes, 1);
  }
  void copy_d2h_async(void* dst, const void* src, size_t bytes) override {
    streams_.copy(Stream::D2H, dst, bytes, src, bytes, bytes, 1);
  }
  void copy_h2d_2d_async(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width,
                         size_t rows) override {
    streams_.copy(Stream::H2D, dst, dst_pitch, src, src_pitch, width, rows);
  }
  void copy_d2h_2d_async(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width,
                         size_t rows) override {
    streams_.copy(Stream::D2H, dst, dst_pitch, src, src_pitch, width, rows);
  }

  void set_device_limit(int64_t bytes) override { arena_.set_limit(bytes); }
  DeviceMemoryInfo device_memory() const override {
    DeviceMemoryInfo m;
    m.in_use = arena_.in_use();
    m.peak = arena_.peak();
    m.limit = arena_.limit();
    return m;
  }
  void reset_device_peak() override { arena_.reset_peak(); }

 private:
  ThreadPool pool_;
  DeviceArena arena_;
  CpuStreams streams_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(const CpuBackendOptions& opts) {
  CpuBackendOptions o = opts;
  if (o.n_threads <= 0) o.n_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return std::make_unique<CpuBackend>(o);
}

std::unique_ptr<Backend> make_cpu_backend(int n_threads) {
  CpuBackendOptions o;
  o.n_threads = n_threads;
  return make_cpu_backend(o);
}

}  // namespace headinfer
