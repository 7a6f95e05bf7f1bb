// The CUDA backend: owns a compute stream and a cuBLAS handle on one device; every
// op is enqueued on that stream. download() and upload() wait for it; other ops
// return once enqueued (synchronize() waits for it and the two copy streams).
// Offloading (docs/offload.md): pinned host memory, H2D / D2H copy streams with
// events (streams.hpp), device memory counted against --gpu-memory (device_memory.hpp).
// The class is shared by cuda_backend.cpp (the factory functions) and
// cuda_attention.cpp (the attention dispatch); only those files include this header.
#pragma once

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "backend/cuda/cuda_backend.hpp"
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/cuda_internal.hpp"
#include "backend/cuda/cudnn_attention.hpp"
#include "backend/cuda/device_memory.hpp"
#include "backend/cuda/kernels.hpp"
#include "backend/cuda/pinned_host.hpp"
#include "backend/cuda/streams.hpp"

namespace headinfer::cuda_backend_detail {

using cuda::AttnParams;
using cuda::PieceTable;

// Fewest keys worth a split of their own (below this, the combine step costs more
// than the parallelism buys), and blocks per SM to aim for, per attention kernel: the
// CUDA-core kernel stages tiles synchronously, so it wants more blocks in flight; the
// decode kernel is memory-bound and wants every SM streaming several key runs.
constexpr int64_t kMinKeysPerSplitMma = 256, kMinKeysPerSplitSimt = 128, kMinKeysPerSplitDecode = 64;
constexpr int kBlocksPerSmSimt = 4;
constexpr int64_t kMinKeysBalance = 1024;

inline bool is_device_pointer(const void* p) {
  cudaPointerAttributes attr{};
  if (cudaPointerGetAttributes(&attr, p) != cudaSuccess) {
    cudaGetLastError();  // clear: an unknown host pointer is not an error here
    return false;
  }
  return attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeManaged;
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Debugging knobs (read once per backend), to isolate a kernel when a parity test fails:
//   HEADINFER_CUDA_ATTN_PATH=simt   always use the CUDA-core attention kernel
//   HEADINFER_CUDA_ATTN_PATH=own    never use cuDNN's fused attention (own kernels only)
//   HEADINFER_CUDA_ATTN_SPLITS=N    at most N key splits per piece batch (1: no split-KV)
//   HEADINFER_CUDA_ATTN_WARPS=8     tensor-core blocks of 8 warps / 128 rows (default 4 / 64)
//   HEADINFER_CUDA_ATTN_DECODE_BPS=N  decode kernel: aim for N blocks per SM (default: as
//                                     many as are resident at once, one full wave)
struct AttnDebug {
  bool force_simt = false;
  bool no_cudnn = false;
  // Several KV heads in one decode launch (bit-equal to per-head launches; decode
  // 10.5 -> 6.2 ms/token at 4K together with the GEMV); HEADINFER_CUDA_DECODE_HEADS=0 turns it off.
  bool decode_heads = true;
  int64_t max_splits = 0;  // 0: no limit
  // The tensor-core prefill block: 0 (default) picks by the call's rows (see
  // attn_kernel); HEADINFER_CUDA_ATTN_WARPS=4, 8, 4x2, wg or wg2 fixes one.
  int mma_warps = 0;
  int decode_blocks_per_sm = 0;  // 0: the kernel's occupancy
  // HEADINFER_CUDA_ATTN_DECODE=simt: few rows with BF16/F16 KV on the CUDA-core decode
  // kernel (f32 math) instead of the tensor-core one.
  bool decode_simt = false;
  bool split_rope_store = false;  // HEADINFER_CUDA_FUSE_ROPE_STORE=0: RoPE and the KV store as two launches
  // HEADINFER_CUDA_FUSE_SWIGLU=1: decode's gate/up GEMV writes the SwiGLU itself (the
  // same bits). Off: 9.5% slower decode on the H200 (docs/gpu.md, 2026-12-05).
  bool fuse_swiglu = false;
  // A decode token's QKV GEMV rotates its Q/K rows and stores the new K/V itself, one
  // kernel fewer a layer (gemv_pairs.cu); HEADINFER_CUDA_FUSE_QKV_ROPE=0: the GEMV, then
  // the RoPE + KV store kernel (the same bits).
  bool fuse_qkv_rope = true;
  // Prefill's GEMM inputs handed over in the weight dtype (the norms write them so; the
  // MLP keeps gate/up and the SwiGLU in it, as HF does) instead of f32 rows converted
  // before each GEMM: 1.07 -> 1.115x HF at 64K on the H200 (docs/gpu.md, 2026-12-05).
  // HEADINFER_CUDA_BF16_ROWS=0 converts f32 rows as before.
  bool bf16_rows = true;
  // The tensor-core decode kernel with the keys on the MMA's M side: -1 (default) for
  // calls of at most 8 rows (a GQA group; one 8-row tile), HEADINFER_CUDA_DECODE_KEYS_M=1
  // for every call it takes, =0 for none. For a group of 4 it issues 26% fewer
  // instructions, 4K kernel 12.5 -> 11.7 us, 128K decode 8.93-8.97 -> 8.82-8.88 ms/token (H200).
  int decode_keys_m = -1;
  // The cuDNN path keeps a call's converted queries for the next call that promises
  // q_unchanged (the same bits; prefill +1% at 64K and 128K, H200);
  // HEADINFER_CUDA_Q_REUSE=0 converts them in every call.
  bool q_reuse = true;
  static AttnDebug from_env() {
    AttnDebug d;
    if (const char* e = std::getenv("HEADINFER_CUDA_DECODE_HEADS")) d.decode_heads = std::strcmp(e, "0") != 0;
    if (const char* e = std::getenv("HEADINFER_CUDA_ATTN_WARPS"))
      d.mma_warps = std::strcmp(e, "4x2") == 0   ? cuda::kMmaWide
                    : std::strcmp(e, "wg") == 0  ? cuda::kMmaWarpgroup
                    : std::strcmp(e, "wg2") == 0 ? cuda::kMmaWarpgroup2
                    : std::atoi(e) == 8          ? 8
                    : std::atoi(e) == 4          ? 4
                                                 : 0;
    if (const char* e = std::getenv("HEADINFER_CUDA_ATTN_PATH")) {
      d.force_simt = std::strcmp(e, "simt") == 0;
      d.no_cudnn = d.force_simt || std::strcmp(e, "own") == 0;
    }
    if (const char* e = std::getenv("HEADINFER_CUDA_ATTN_SPLITS")) d.max_splits = std::max(0L, std::atol(e));
    if (const char* e = std::getenv("HEADINFER_CUDA_ATTN_DECODE")) d.decode_simt = std::strcmp(e, "simt") == 0;
    if (const char* e = std::getenv("HEADINFER_CUDA_FUSE_ROPE_STORE")) d.split_rope_store = std::strcmp(e, "0") == 0;
    if (const char* e = std::getenv("HEADINFER_CUDA_FUSE_SWIGLU")) d.fuse_swiglu = std::strcmp(e, "1") == 0;
    if (const char* e = std::getenv("HEADINFER_CUDA_FUSE_QKV_ROPE")) d.fuse_qkv_rope = std::strcmp(e, "0") != 0;
    if (const char* e = std::getenv("HEADINFER_CUDA_BF16_ROWS")) d.bf16_rows = std::strcmp(e, "0") != 0;
    if (const char* e = std::getenv("HEADINFER_CUDA_DECODE_KEYS_M")) d.decode_keys_m = std::strcmp(e, "1") == 0 ? 1 : 0;
    if (const char* e = std::getenv("HEADINFER_CUDA_Q_REUSE")) d.q_reuse = std::strcmp(e, "0") != 0;
    if (const char* e = std::getenv("HEADINFER_CUDA_ATTN_DECODE_BPS"))
      d.decode_blocks_per_sm = std::min(64, std::max(1, std::atoi(e)));
    return d;
  }
};

// Which attention kernel a call runs. Few rows (decode, small chunks): the
// memory-bound split-KV kernels, on tensor cores for BF16/F16 KV (q and P split in two
// parts, near-f32 products), on CUDA cores otherwise (f32 math); more rows with
// BF16/F16 KV: tensor-core flash attention; anything else: the CUDA-core kernel.
enum class Path { kMma, kDecodeMma, kDecode, kSimt };
struct AttnKernel {
  Path path = Path::kSimt;
  int mma_warps = 4;
  bool keys_as_m = false;  // kDecodeMma only
};

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device) : device_(device) {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
      cudaGetLastError();
      HI_FAIL("cuda backend: no usable CUDA driver or device (" << cudaGetErrorName(e) << ": "
                                                                << cudaGetErrorString(e) << ")");
    }
    HI_CHECK(device >= 0 && device < count,
             "cuda backend: device " << device << " does not exist (" << count << " CUDA devices)");
    HI_CUDA_CHECK(cudaSetDevice(device_));
    cudaDeviceProp prop{};
    HI_CUDA_CHECK(cudaGetDeviceProperties(&prop, device_));
    HI_CHECK(prop.major >= 8, "cuda backend: device " << device << " (" << prop.name << ") is sm_" << prop.major
                                                      << prop.minor << "; sm_80 or newer is required");
    sm_count_ = prop.multiProcessorCount;
    debug_ = AttnDebug::from_env();
    device_name_ = prop.name;
    HI_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    gemm_ = std::make_unique<cuda::CublasGemm>(stream_);
    mem_ = std::make_shared<cuda::DeviceMemory>(device_);
    copies_ = std::make_unique<cuda::CudaStreams>(stream_);
    pinned_ = std::make_unique<cuda::PinnedHost>(device_);
    // Scratch the ops need is taken now, so it is part of the device overhead a plan
    // measures before anything else is allocated (decode split-KV partials fit).
    part_.get(kPartialsReserve, stream_);
    if (!debug_.no_cudnn) cudnn_ = cuda::make_cudnn_attention(stream_, cudnn_why_);
    ids_.get(size_t{64} << 10, stream_);
    mem_->sample_driver();
  }

  ~CudaBackend() override {
    cudaSetDevice(device_);
    if (copies_) {
      try {
        copies_->synchronize_all();
      } catch (...) {
      }
    }
    cudaStreamSynchronize(stream_);
    copies_.reset();
    pinned_.reset();
    gemm_.reset();
    for (auto& t : freq_tables_) cudaFree(t.dev);
    cudaStreamDestroy(stream_);
  }

  std::string name() const override { return "cuda:" + std::to_string(device_) + " (" + device_name_ + ")"; }

  void* alloc(size_t bytes) override {
    use();
    if (bytes == 0) return nullptr;
    return mem_->alloc(bytes, "a device buffer");
  }

  void free(void* p) override {
    if (!p) return;
    use();
    mem_->free(p);
  }

  void upload(void* dst, const void* src, size_t bytes) override {
    if (bytes == 0) return;
    use();
    HI_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_));
    HI_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  void download(void* dst, const void* src, size_t bytes) override {
    if (bytes == 0) return;
    use();
    HI_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
    HI_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  // Four bytes come back instead of the row. The index lands in the token-id scratch
  // (reserved at construction, so no allocation the plan does not count), read back
  // before anything else can use it.
  int32_t argmax(const float* x, int64_t n) override {
    HI_CHECK(n > 0, "cuda argmax: " << n << " values");
    use();
    auto* dev = static_cast<int32_t*>(ids_.get(sizeof(int32_t), stream_));
    cuda::launch_argmax(x, n, dev, stream_);
    int32_t r = 0;
    download(&r, dev, sizeof r);
    return r;
  }

  void argmax_to(const float* x, int64_t n, int32_t* dst) override {
    HI_CHECK(n > 0, "cuda argmax: " << n << " values");
    use();
    cuda::launch_argmax(x, n, dst, stream_);
  }

  // k pairs come back instead of the row (the scratch holds kMaxTopK of them; it is
  // reserved at construction), sorted here.
  std::vector<LogitCandidate> top_k(const float* x, int64_t n, int k) override {
    HI_CHECK(n > 0 && k >= 1 && k <= kMaxTopK,
             "cuda top_k: k " << k << " of " << n << " values (1 to " << kMaxTopK << ")");
    HI_CHECK(n <= INT32_MAX, "cuda top_k: " << n << " values is too many");
    use();
    const int kk = static_cast<int>(std::min<int64_t>(k, n));
    auto* vals = static_cast<float*>(ids_.get(sizeof(float) * 2 * kMaxTopK, stream_));
    auto* idx = reinterpret_cast<int32_t*>(vals + kMaxTopK);
    cuda::launch_top_k(x, n, kk, vals, idx, stream_);
    // Values and indices in one copy back: the values' slots, then the first kk indices.
    std::vector<uint32_t> words(static_cast<size_t>(kMaxTopK + kk));
    download(words.data(), vals, words.size() * sizeof(uint32_t));
    std::vector<LogitCandidate> c(static_cast<size_t>(kk));
    for (size_t i = 0; i < c.size(); ++i) {
      float v = 0.f;
      int32_t id = 0;
      std::memcpy(&v, &words[i], sizeof v);
      std::memcpy(&id, &words[kMaxTopK + i], sizeof id);
      c[i] = {id, v};
    }
    std::sort(c.begin(), c.end(), logit_order);
    return c;
  }

  void copy(void* dst, const void* src, size_t bytes) override {
    if (bytes == 0) return;
    use();
    HI_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_));
  }

  Mat prepare(const Tensor& t, std::vector<std::shared_ptr<const void>>& keep_alive) override {
    use();
    HI_CHECK(!t.empty(), "cuda prepare: tensor '" << t.name << "' has no data");
    DType dt = t.dtype;
    const void* src = t.data;
    std::vector<float> deq;
    if (dt == DType::Q8_0) {  // no Q8_0 kernels: dequantize once at load
      deq.resize(static_cast<size_t>(t.numel()));
      to_f32(dt, t.data, deq.data(), t.numel());
      src = deq.data();
      dt = DType::F32;
    }
    const size_t bytes = dtype_bytes(dt, t.numel());
    void* d = mem_->alloc(bytes, "weights");
    try {
      upload(d, src, bytes);
    } catch (...) {
      mem_->free(d);
      throw;
    }
    // Weights count against the budget until the caller drops keep_alive.
    keep_alive.push_back(std::shared_ptr<const void>(d, [mem = mem_](const void* p) {
      try {
        mem->free(const_cast<void*>(p));
      } catch (...) {  // a deleter must not throw; the error is in the device state
      }
    }));
    Mat m;
    m.dtype = dt;
    m.data = d;
    m.rows = t.rows();
    m.cols = t.cols();
    return m;
  }

  void embed(const int32_t* ids, int n, const Mat& table, float* out) override {
    if (n <= 0) return;
    use();
    const int32_t* dev_ids = ids;
    if (!is_device_pointer(ids)) {  // tolerate host ids: check and stage them
      for (int i = 0; i < n; ++i)
        HI_CHECK(ids[i] >= 0 && ids[i] < table.rows,
                 "token id " << ids[i] << " is outside the vocabulary (0.." << table.rows - 1 << ")");
      auto* tmp = static_cast<int32_t*>(ids_.get(sizeof(int32_t) * n, stream_));
      HI_CUDA_CHECK(cudaMemcpyAsync(tmp, ids, sizeof(int32_t) * n, cudaMemcpyHostToDevice, stream_));
      HI_CUDA_CHECK(cudaStreamSynchronize(stream_));
      dev_ids = tmp;
    }
    cuda::launch_embed(dev_ids, n, table.data, table.dtype, table.rows, table.cols, out, stream_);
  }

  void rmsnorm(const float* x, const Mat& w, float eps, int n, float* out) override {
    use();
    cuda::launch_rmsnorm(x, w.data, w.dtype, eps, n, w.rows * w.cols, out, stream_);
  }

  void begin_forward(int n_tokens) override { gemm_->set_forward_rows(n_tokens); }

  void matmul(const float* x, int n, const Mat& w, const Mat* bias, float* out) override {
    use();
    gemm_->matmul(x, n, w, bias, out);
  }

  void matmul_strided(const float* x, int64_t x_stride, int n, const Mat& w, const Mat* bias, float* out) override {
    use();
    gemm_->matmul(x, n, w, bias, out, x_stride);
  }

  void rope(const RopeArgs& a) override {
    if (a.n_tokens <= 0 || a.n_heads <= 0) return;
    use();
    HI_CHECK(a.head_dim >= 2 && a.head_dim % 2 == 0, "cuda rope: head_dim " << a.head_dim << " is not even");
    HI_CHECK(a.inv_freq, "cuda rope: inv_freq is null");
    cuda::launch_rope(a.x, a.stride, a.n_tokens, a.n_heads, a.head_dim, a.pos0, freq_table(a.inv_freq, a.head_dim / 2),
                      stream_);
  }

  void attention(const AttnArgs& a) override;
  std::string attention_path() const {
    return cudnn_ ? "cuDNN " + cudnn_->version() + " fused attention for prefill, own kernels otherwise"
                  : "own kernels (cuDNN: " + (debug_.no_cudnn ? std::string("off") : cudnn_why_) + ")";
  }

  void combine_attention(const float* part_o, const float* part_lse, int n_slots, int n_q, int n_qh, int head_dim,
                         float* out, int64_t out_stride, float* lse) override {
    const int64_t rows = static_cast<int64_t>(n_q) * n_qh;
    if (rows <= 0 || n_slots <= 0) return;
    HI_CHECK(rows < INT_MAX, "cuda combine_attention: " << rows << " rows is too many");
    use();
    cuda::launch_attention_combine(part_o, part_lse, n_slots, static_cast<int>(rows), n_qh, head_dim, out, out_stride,
                                   lse, stream_);
  }

  void merge_attention(float* o_a, float* lse_a, const float* o_b, const float* lse_b, int n_q, int n_qh,
                       int head_dim, int64_t stride_a, int64_t stride_b) override {
    use();
    cuda::launch_merge_attention(o_a, lse_a, o_b, lse_b, n_q, n_qh, head_dim, stride_a, stride_b, stream_);
  }

  void swiglu(const float* gate, const float* up, int rows, int64_t cols, int64_t in_stride, float* out,
              int64_t out_stride) override {
    use();
    cuda::launch_swiglu(gate, up, rows, cols, in_stride, out, out_stride, stream_);
  }

  // Decode rows with HEADINFER_CUDA_FUSE_SWIGLU=1: one GEMV launch that writes the
  // SwiGLU of each gate row and its up row (the same bits as the GEMV, then the SwiGLU).
  void matmul_swiglu(const float* x, int n, const Mat& w_gate_up, float* gu) override {
    use();
    if (!debug_.fuse_swiglu || !gemm_->matmul_swiglu(x, n, w_gate_up, gu)) Backend::matmul_swiglu(x, n, w_gate_up, gu);
  }

  // Prefill's GEMM inputs in the weight dtype (unless HEADINFER_CUDA_BF16_ROWS=0): what cuBLAS
  // takes anyway, so the norms' rows feed it unconverted.
  DType gemm_rows_dtype(const Mat& w, int n) const override {
    return debug_.bf16_rows && gemm_->takes_cublas(n) && (w.dtype == DType::BF16 || w.dtype == DType::F16) ? w.dtype
                                                                                                           : DType::F32;
  }
  void norm_rows(float* x, const float* y, const Mat& w, float eps, int n, void* out, DType out_dtype) override {
    if (out_dtype == DType::F32) return Backend::norm_rows(x, y, w, eps, n, out, out_dtype);
    use();
    cuda::launch_add_rmsnorm_16(x, y, w.data, w.dtype, eps, n, w.rows * w.cols, out, out_dtype, stream_);
  }
  void matmul_rows(const void* x, DType x_dtype, int n, const Mat& w, const Mat* bias, float* out) override {
    if (x_dtype == DType::F32) return Backend::matmul_rows(x, x_dtype, n, w, bias, out);
    HI_CHECK(x_dtype == w.dtype,
             "cuda matmul_rows: rows of " << dtype_name(x_dtype) << " for " << dtype_name(w.dtype) << " weights");
    use();
    gemm_->matmul_16(x, w.cols, n, w, bias, out, DType::F32);
  }
  // The MLP in the weight dtype: gate/up rows rounded to it, the SwiGLU's rows straight
  // into the down projection. Within gu's bytes: [0, half) the gate/up rows, [half, end)
  // the SwiGLU's rows of ffn values (and, before them, f32 x converted, were x F32).
  DType mlp_rows_dtype(int n, const Mat& w_gate_up, const Mat& w_down) const override {
    const DType dt = gemm_rows_dtype(w_gate_up, n);
    return dt != DType::F32 && w_down.dtype == dt && w_gate_up.rows == 2 * w_down.cols &&
                   w_gate_up.cols == w_down.rows && w_gate_up.rows >= w_gate_up.cols
               ? dt
               : DType::F32;
  }
  void mlp(const void* x, DType x_dtype, int n, const Mat& w_gate_up, const Mat& w_down, float* gu,
           float* out) override {
    const DType dt = mlp_rows_dtype(n, w_gate_up, w_down);
    if (dt == DType::F32) return Backend::mlp(x, x_dtype, n, w_gate_up, w_down, gu, out);
    HI_CHECK(x_dtype == DType::F32 || x_dtype == dt,
             "cuda mlp: rows of " << dtype_name(x_dtype) << " for " << dtype_name(dt) << " weights");
    use();
    const int64_t ffn = w_down.cols, hidden = w_gate_up.cols;
    uint16_t* rows16 = reinterpret_cast<uint16_t*>(gu);
    uint16_t* second = rows16 + static_cast<int64_t>(n) * 2 * ffn;
    const void* x16 = x;
    if (x_dtype == DType::F32) {
      cuda::launch_convert_f32_rows(static_cast<const float*>(x), n, hidden, hidden, dt, second, stream_);
      x16 = second;
    }
    gemm_->matmul_16(x16, hidden, n, w_gate_up, nullptr, rows16, dt);
    cuda::launch_swiglu_16(rows16, rows16 + ffn, dt, n, ffn, 2 * ffn, second, ffn, stream_);
    gemm_->matmul_16(second, ffn, n, w_down, nullptr, out, DType::F32);
  }

  void add_rmsnorm(float* x, const float* y, const Mat& w, float eps, int n, float* out) override {
    use();
    cuda::launch_add_rmsnorm(x, y, w.data, w.dtype, eps, n, w.rows * w.cols, out, stream_);
  }

  void add(float* x, const float* y, int64_t n) override {
    use();
    cuda::launch_add(x, y, n, stream_);
  }

  void store_kv(const float* src, int64_t src_stride, int n, int head_dim, DType kv_dtype, void* dst) override {
    use();
    cuda::launch_store_kv(src, src_stride, n, head_dim, kv_dtype, dst, stream_);
  }

  void store_kv_heads(const float* k, const float* v, int64_t src_stride, int n, int n_heads, int head_dim,
                      DType kv_dtype, void* const* dst_k, void* const* dst_v) override {
    use();
    cuda::launch_store_kv_heads(k, v, src_stride, n, n_heads, head_dim, kv_dtype, dst_k, dst_v, stream_);
  }
  // One launch for both where the heads fit one: the same rows, the same bits as
  // rope() then store_kv_heads().
  void rope_store_kv_heads(const RopeArgs& r, const float* k, const float* v, int64_t src_stride, int n, int n_heads,
                           int head_dim, DType kv_dtype, void* const* dst_k, void* const* dst_v) override {
    if (r.n_tokens != n || n <= 0 || r.n_heads <= 0 || n_heads <= 0 || n_heads > cuda::kStoreKvHeads ||
        debug_.split_rope_store) {
      Backend::rope_store_kv_heads(r, k, v, src_stride, n, n_heads, head_dim, kv_dtype, dst_k, dst_v);
      return;
    }
    use();
    HI_CHECK(r.head_dim >= 2 && r.head_dim % 2 == 0, "cuda rope: head_dim " << r.head_dim << " is not even");
    HI_CHECK(r.inv_freq, "cuda rope: inv_freq is null");
    cuda::launch_rope_store_kv_heads(r.x, r.stride, n, r.n_heads, r.head_dim, r.pos0,
                                     freq_table(r.inv_freq, r.head_dim / 2), k, v, src_stride, n_heads, kv_dtype,
                                     dst_k, dst_v, stream_);
  }

  // One kernel for a decode token where the GEMV would run the projection (the same
  // bits as matmul_rows, then rope_store_kv_heads); the two ops otherwise.
  void matmul_rope_store_kv(const void* x, DType x_dtype, int n, const Mat& w, const Mat* bias, const RopeArgs& r,
                            int n_kv_heads, DType kv_dtype, void* const* dst_k, void* const* dst_v) override {
    const bool fits = debug_.fuse_qkv_rope && !debug_.split_rope_store && x_dtype == DType::F32 && n == 1 &&
                      r.n_tokens == 1 && r.stride == w.rows && r.inv_freq && r.head_dim >= 2 &&
                      static_cast<int64_t>(r.n_heads + n_kv_heads) * r.head_dim == w.rows;
    if (fits) {
      use();
      if (gemm_->matmul_rope_store(static_cast<const float*>(x), n, w, bias, r.x, r.n_heads, n_kv_heads, r.head_dim,
                                   r.pos0, freq_table(r.inv_freq, r.head_dim / 2), kv_dtype, dst_k, dst_v))
        return;
    }
    Backend::matmul_rope_store_kv(x, x_dtype, n, w, bias, r, n_kv_heads, kv_dtype, dst_k, dst_v);
  }

  void synchronize() override {
    use();
    copies_->synchronize_all();
    mem_->sample_driver();
  }

  // ---- Offloading: pinned host memory, copy streams, events, the budget.
  void* alloc_host(size_t bytes) override {
    use();
    return pinned_->alloc(bytes);
  }
  void free_host(void* p) override {
    use();
    pinned_->free(p);
  }
  Event create_event() override {
    use();
    return copies_->create_event();
  }
  void destroy_event(Event e) override {
    use();
    copies_->destroy_event(e);
  }
  Event create_timing_event() override {
    use();
    return copies_->create_event(/*timing=*/true);
  }
  double elapsed_seconds(Event from, Event to) override { return copies_->elapsed_seconds(from, to); }
  void record(Event e, Stream s) override { copies_->record(e, s); }
  void wait(Stream s, Event e) override { copies_->wait(s, e); }
  void sync(Event e) override {
    copies_->sync(e);
    mem_->sample_driver();
  }
  void copy_h2d_async(void* dst, const void* src, size_t bytes) override {
    copies_->copy(Stream::H2D, dst, bytes, src, bytes, bytes, 1);
  }
  void copy_d2h_async(void* dst, const void* src, size_t bytes) override {
    copies_->copy(Stream::D2H, dst, bytes, src, bytes, bytes, 1);
  }
  void copy_h2d_2d_async(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width,
                         size_t rows) override {
    copies_->copy(Stream::H2D, dst, dst_pitch, src, src_pitch, width, rows);
  }
  void copy_d2h_2d_async(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width,
                         size_t rows) override {
    copies_->copy(Stream::D2H, dst, dst_pitch, src, src_pitch, width, rows);
  }
  void set_device_limit(int64_t bytes) override { mem_->set_limit(bytes); }
  DeviceMemoryInfo device_memory() const override { return mem_->info(); }
  void reset_device_peak() override { mem_->reset_peak(); }
  cuda::PinnedStats pinned_stats() const { return pinned_->stats(); }

 private:
  struct FreqTable {
    std::vector<double> host;
    double* dev = nullptr;
  };

  void use() { HI_CUDA_CHECK(cudaSetDevice(device_)); }

  void attention_splits(const AttnArgs& a, int R);

  // The kernel for R rows: a function of the shapes, the alignment of the pieces and
  // the debug knobs only (never of the key count), so calls over different keys of
  // the same rows run the same arithmetic.
  AttnKernel attn_kernel(int R, DType kv, int D, bool aligned) const {
    AttnKernel k;
    if (!debug_.force_simt && aligned) {
      if (R > cuda::kSimtRows && cuda::attention_mma_supported(kv, D))
        k.path = Path::kMma;
      else if (R <= cuda::kSimtRows && !debug_.decode_simt && cuda::attention_mma_supported(kv, D))
        k.path = Path::kDecodeMma;
      else if (R <= cuda::kSimtRows && cuda::attention_decode_supported(kv, D))
        k.path = Path::kDecode;
    }
    // The 4 x 32-row block where its 128-row blocks still fill every SM at head_dim
    // 128 (311-334 TFLOP/s against 262-279 for the 4-warp block on the shapes,
    // H200); the 4-warp block (64 rows) for fewer rows and head_dim 64.
    k.mma_warps = debug_.mma_warps != 0                                          ? debug_.mma_warps
                  : D == 128 && R >= cuda::attention_mma_wide_rows() * sm_count_ ? cuda::kMmaWide
                                                                                 : 4;
    k.keys_as_m = k.path == Path::kDecodeMma &&
                  (debug_.decode_keys_m == 1 || (debug_.decode_keys_m < 0 && R <= cuda::attention_decode_mma_rows(true)));
    return k;
  }

  // The parameters every attention launch shares (outputs and keys are the caller's).
  static AttnParams attn_params(const AttnArgs& a, int R) {
    AttnParams prm{};
    prm.q = a.q;
    prm.q_stride = a.q_stride;
    prm.n_rows = R;
    prm.n_qh = a.n_qh;
    prm.head_dim = a.head_dim;
    prm.causal = a.causal ? 1 : 0;
    prm.q_pos0 = a.q_pos0;
    prm.scale_log2 = static_cast<float>(static_cast<double>(a.scale) * 1.4426950408889634);
    prm.settled_pos = a.settled_pos;
    return prm;
  }

  void launch_attention_kernel(const AttnParams& p, int splits, const AttnKernel& k, DType kv) {
    if (k.path == Path::kMma)
      cuda::launch_attention_mma(p, splits, kv, k.mma_warps, stream_);
    else if (k.path == Path::kDecode)
      cuda::launch_attention_decode(p, splits, kv, stream_);
    else if (k.path == Path::kDecodeMma)
      cuda::launch_attention_decode_mma(p, splits, kv, k.keys_as_m, stream_);
    else
      cuda::launch_attention_simt(p, splits, kv, stream_);
  }

  // Device copy of a host inv_freq table, uploaded once per distinct content.
  const double* freq_table(const double* inv_freq, int n) {
    if (is_device_pointer(inv_freq)) return inv_freq;
    for (const auto& t : freq_tables_)
      if (static_cast<int>(t.host.size()) == n && std::memcmp(t.host.data(), inv_freq, sizeof(double) * n) == 0)
        return t.dev;
    FreqTable t;
    t.host.assign(inv_freq, inv_freq + n);
    HI_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&t.dev), sizeof(double) * n));
    HI_CUDA_CHECK(cudaMemcpy(t.dev, t.host.data(), sizeof(double) * n, cudaMemcpyHostToDevice));
    freq_tables_.push_back(std::move(t));
    return freq_tables_.back().dev;
  }

  // Splits of `keys` keys for `row_blocks` row tiles: enough blocks for blocks_per_sm
  // on every SM (where that fills the slots better than no split), at least min_keys
  // keys each, split sizes a multiple of the tile.
  // With balance_waves (blocks of about equal work, more of them than fit at once),
  // the keys may still be split (up to 8 ways, >= kMinKeysBalance keys each) so the
  // blocks fill whole waves: 512 equal blocks on 396 slots run as 2 waves at 65% use,
  // split 3 ways as 4 waves at 97%.
  int choose_splits(int64_t keys, int row_blocks, int tile, int blocks_per_sm, int64_t min_keys, bool balance_waves,
                    int64_t& chunk) const {
    if (keys <= 0) {
      chunk = tile;
      return 1;
    }
    const int64_t target = static_cast<int64_t>(blocks_per_sm) * sm_count_;
    // The share of the resident-block slots the blocks of c splits keep busy, over
    // their waves.
    auto use = [&](int64_t c) {
      const int64_t blocks = row_blocks * c;
      return static_cast<double>(blocks) / static_cast<double>(ceil_div(blocks, target) * target);
    };
    const int64_t want = row_blocks >= target ? 1 : ceil_div(target, row_blocks);
    int64_t s = std::max<int64_t>(1, std::min(want, ceil_div(keys, min_keys)));
    // A split costs a combine pass, so only where it fills the slots better: 256 row
    // blocks on 264 slots run at 97% unsplit, and split in two as well.
    if (s > 1 && use(s) <= use(1) + 0.02) s = 1;
    if (balance_waves && row_blocks >= target) {
      double best = use(1);
      for (int64_t c = 2; c <= 8 && ceil_div(keys, c) >= kMinKeysBalance; ++c)
        if (use(c) > best + 0.02) {
          best = use(c);
          s = c;
        }
    }
    if (debug_.max_splits > 0) s = std::min(s, debug_.max_splits);
    chunk = ceil_div(ceil_div(keys, s), tile) * tile;
    return static_cast<int>(ceil_div(keys, chunk));
  }

  // Resident blocks per SM of an attention kernel, cached per (kernel, dtype,
  // head_dim, shape variant); query() computes it on a miss.
  template <typename F>
  int occupancy(int kernel, DType kv, int head_dim, int variant, F query) {
    const int64_t key = ((static_cast<int64_t>(kernel) * 64 + static_cast<int>(kv)) * 1024 + head_dim) * 64 + variant;
    for (const auto& [k, v] : occupancy_)
      if (k == key) return v;
    const int v = query();
    occupancy_.emplace_back(key, v);
    return v;
  }

  int device_;
  std::vector<std::pair<int64_t, int>> occupancy_;
  std::string device_name_;
  int sm_count_ = 1;
  AttnDebug debug_;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<cuda::CublasGemm> gemm_;
  cuda::ScratchBuffer part_, ids_;
  std::unique_ptr<cuda::CudnnAttention> cudnn_;
  std::string cudnn_why_;
  bool attention_cudnn(const AttnArgs& a, const std::vector<const KvPiece*>& pieces);
  // The queries the cuDNN path last converted: from where, into where, which shape.
  struct ConvertedQ {
    const float* src = nullptr;
    const void* dst = nullptr;
    int64_t stride = 0;
    int rows = 0, width = 0;
    DType dtype = DType::F32;
    bool operator==(const ConvertedQ&) const = default;
  };
  ConvertedQ converted_q_;
  std::vector<FreqTable> freq_tables_;
  // Offloading (declared last: destroyed first, after the streams drained).
  static constexpr size_t kPartialsReserve = size_t{16} << 20;
  std::shared_ptr<cuda::DeviceMemory> mem_;
  std::unique_ptr<cuda::CudaStreams> copies_;
  std::unique_ptr<cuda::PinnedHost> pinned_;
};

}  // namespace headinfer::cuda_backend_detail
