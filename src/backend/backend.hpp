// The compute interface the runtime drives. The CPU backend is the reference
// implementation; others (CUDA) must match it op by op. Activations are f32 rows;
// weights are matrices in their stored dtype; KV lives in slabs of any KV dtype.
// Pointers handed to ops belong to the backend's memory (alloc()).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "format/tensor.hpp"

namespace headinfer {

// A weight matrix [rows, cols] (or a vector: rows = 1) in backend memory.
struct Mat {
  DType dtype = DType::F32;
  const void* data = nullptr;
  int64_t rows = 0, cols = 0;
  bool empty() const { return data == nullptr; }
};

// A run of cached keys/values of one KV head: token i of the run is at absolute
// position pos0 + i; K and V rows are head_dim elements of kv_dtype, contiguous.
// In a call over several KV heads, head j's run is at k + j * head_stride (and
// v + j * head_stride) elements.
struct KvPiece {
  const void* k = nullptr;
  const void* v = nullptr;
  int64_t n_tokens = 0;
  int64_t pos0 = 0;
  int64_t head_stride = 0;
};

// Attention of the query heads that share one KV head.
struct AttnArgs {
  const float* q = nullptr;   // q[t * q_stride + h * head_dim + d], t < n_q, h < n_qh
  int64_t q_stride = 0;
  int n_q = 0;                // query tokens (1 in decode)
  int n_qh = 0;               // query heads served by this KV head
  int head_dim = 0;
  int64_t q_pos0 = 0;         // absolute position of query token 0 (tokens consecutive)
  bool causal = true;         // keys at positions > query position are masked
  float scale = 0.f;          // softmax scale (1/sqrt(head_dim))
  DType kv_dtype = DType::F32;
  std::vector<KvPiece> pieces;
  float* out = nullptr;       // same layout and stride as q
  int64_t out_stride = 0;
  float* lse = nullptr;       // optional: [n_q * n_qh], natural log of the softmax denominator
                              // (-inf where every key was masked)
  // Several KV heads in one call (n_kv_heads > 1) mean exactly n_kv_heads calls whose
  // head j has q + j * n_qh * head_dim, out + j * n_qh * head_dim (rows of all heads
  // side by side, strides as above), lse + j * lse_head_stride, and in every piece
  // K and V at j * head_stride elements further (in split mode, below: part_o +
  // j * n_qh * head_dim and part_lse + j * n_qh). One call lets a backend fill the
  // device with every head's work at once.
  int n_kv_heads = 1;
  int64_t lse_head_stride = 0;  // floats
  // accumulate: out and lse hold a result over other keys; the call merges its own
  // into them exactly as merge_attention(out, lse, result, result_lse) would.
  // scratch (optional, but required with accumulate): n_q * n_kv_heads * n_qh *
  // (head_dim + 1) floats the backend may use during the call (a head's result, or
  // converted queries), given by the caller so it is part of the caller's memory plan.
  bool accumulate = false;
  float* scratch = nullptr;
  // q_unchanged: the caller's promise that since its previous attention call with the
  // same q and scratch nobody wrote either (a chunk attending block after block), so
  // what the backend kept in scratch from q then (queries converted to the KV dtype)
  // still holds. A backend may ignore it.
  bool q_unchanged = false;
  // Optional, where the backend's gemm_rows_dtype is kv_dtype (the CUDA backend's BF16
  // rows): the result as rows of kv_dtype here, laid out as out, which must then hold
  // every head's columns (out_stride == n_kv_heads * n_qh * head_dim); out becomes
  // scratch and lse is left undefined. For a call that is the only one over its
  // queries (no accumulate): the next GEMM takes the rows as they are.
  void* out_rows = nullptr;

  // Split mode (split_keys > 0; decode): the keys are cut at absolute positions that
  // are multiples of split_keys, and split s (positions [s * split_keys, (s + 1) *
  // split_keys)) writes its own result, normalised over its keys, to slot s:
  //   part_o[s * part_o_slot_stride + t * out_stride + h * head_dim + d]
  //   part_lse[s * part_lse_slot_stride + t * n_qh + h]
  // (out and lse are not written; combine_attention merges the slots). The pieces
  // must be contiguous in position, the first starting on a multiple of split_keys.
  // A split's key tiles start at the split's start and at every piece start inside
  // it, nowhere else: two calls whose pieces have the same boundaries inside a split
  // give that split the same bits, however the rest of their keys are cut.
  int64_t split_keys = 0;
  float* part_o = nullptr;
  int64_t part_o_slot_stride = 0;
  float* part_lse = nullptr;
  int64_t part_lse_slot_stride = 0;

  // Keys at positions below settled_pos were written before the op issued just before
  // this call (not by it): a backend that starts a call while the op before it
  // finishes may read those keys early. 0: any key may be that op's output.
  int64_t settled_pos = 0;
};

// Head j of a several-KV-head call as a call of its own.
AttnArgs attention_head(const AttnArgs& a, int j);

struct RopeArgs {
  float* x = nullptr;          // x[t * stride + h * head_dim + d]
  int64_t stride = 0;
  int n_tokens = 0, n_heads = 0, head_dim = 0;
  int64_t pos0 = 0;            // positions pos0 .. pos0 + n_tokens - 1
  const double* inv_freq = nullptr;  // head_dim / 2 values
};

// Work queues of a device. Ops run on Compute; copies between host and device
// memory run on their own queues so transfers overlap compute. Work on one stream
// runs in the order it was issued; across streams only events order it.
enum class Stream : int { Compute = 0, H2D = 1, D2H = 2 };
const char* stream_name(Stream s);

// A marker in a stream's work (opaque; a backend maps it to its own object). Made
// by create_event, reusable: each record() moves it to the newest point.
struct Event {
  uint64_t id = 0;
  explicit operator bool() const { return id != 0; }
};

// Device memory as the backend sees it; -1 where it is not known.
struct DeviceMemoryInfo {
  int64_t in_use = -1;        // bytes held through alloc() (and prepared weights)
  int64_t peak = -1;          // the most in_use since reset_device_peak()
  int64_t limit = -1;         // the budget alloc() enforces (-1: none)
  int64_t driver_free = -1;   // as the driver reports it
  int64_t driver_total = -1;
  int64_t driver_peak_used = -1;  // the most (total - free) the backend observed
};

// One entry of a top-k list: a token id and its logit.
struct LogitCandidate {
  int32_t id;
  float logit;
};
// Larger logit first, equal logits by smaller id; NaN after every number.
inline bool logit_order(const LogitCandidate& a, const LogitCandidate& b) {
  const bool a_nan = a.logit != a.logit, b_nan = b.logit != b.logit;
  if (a_nan != b_nan) return b_nan;
  if (!a_nan && a.logit != b.logit) return a.logit > b.logit;
  return a.id < b.id;
}
// The min(k, n) largest of n host floats in logit_order (a partial sort).
std::vector<LogitCandidate> largest_logits(const float* x, size_t n, size_t k);
// The most candidates Backend::top_k returns (larger k: read the whole row back).
constexpr int kMaxTopK = 4096;

// Wrappers derive from ForwardingBackend (forwarding_backend.hpp): a new virtual must be forwarded there.
class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;

  // Memory in the backend's space.
  virtual void* alloc(size_t bytes) = 0;
  virtual void free(void* p) = 0;
  virtual void upload(void* dst, const void* src, size_t bytes) = 0;
  virtual void download(void* dst, const void* src, size_t bytes) = 0;
  virtual void copy(void* dst, const void* src, size_t bytes) = 0;  // within the backend
  // Makes a weight tensor usable by ops (the CPU backend uses mapped bytes as is,
  // converting only dtypes it cannot read directly).
  virtual Mat prepare(const Tensor& t, std::vector<std::shared_ptr<const void>>& keep_alive) = 0;

  // out[i, :] = table[ids[i], :]
  virtual void embed(const int32_t* ids, int n, const Mat& table, float* out) = 0;
  // out = x / rms(x) * w, row by row
  virtual void rmsnorm(const float* x, const Mat& w, float eps, int n, float* out) = 0;
  // out[n, W.rows] = x[n, W.cols] @ W^T (+ bias)
  virtual void matmul(const float* x, int n, const Mat& w, const Mat* bias, float* out) = 0;
  // The ops that follow belong to a forward over n_tokens rows, some of them run in
  // passes of fewer rows (the MLP). A backend that picks kernels by row count picks
  // by this, so how a forward is split never changes a bit (ARCHITECTURE invariant 1).
  virtual void begin_forward(int n_tokens) { (void)n_tokens; }
  // The same with input rows x_stride floats apart (x_stride >= W.cols; x[t * x_stride + k]):
  // the numbers of matmul on the packed rows.
  virtual void matmul_strided(const float* x, int64_t x_stride, int n, const Mat& w, const Mat* bias, float* out) = 0;
  // rotate-half RoPE in place
  virtual void rope(const RopeArgs& a) = 0;
  virtual void attention(const AttnArgs& a) = 0;
  // Combines two partial attention results over disjoint keys: (o_a, lse_a) and
  // (o_b, lse_b) -> (o_a, lse_a). Rows of head_dim floats with the given strides.
  virtual void merge_attention(float* o_a, float* lse_a, const float* o_b, const float* lse_b, int n_q, int n_qh,
                               int head_dim, int64_t stride_a, int64_t stride_b) = 0;
  // Merges n_slots partial results over disjoint keys (each normalised over its keys,
  // with its log-sum-exp), rows r = t * n_qh + h: part_o[slot][r][head_dim] and
  // part_lse[slot][r] -> out[t * out_stride + h * head_dim + d] and lse[r] (optional).
  // A slot with lse -inf adds nothing. The arithmetic depends only on the slots'
  // values and their order, so equal slots give equal bits.
  virtual void combine_attention(const float* part_o, const float* part_lse, int n_slots, int n_q, int n_qh,
                                 int head_dim, float* out, int64_t out_stride, float* lse) = 0;
  // out[r * out_stride + i] = silu(gate[r * in_stride + i]) * up[r * in_stride + i] for
  // r < rows, i < cols (gate and up: halves of fused rows, say); out may be gate.
  virtual void swiglu(const float* gate, const float* up, int rows, int64_t cols, int64_t in_stride, float* out,
                      int64_t out_stride) = 0;
  // The MLP's first half: w_gate_up is [gate; up] (2 * ffn rows); gu gets rows of 2 * ffn
  // floats whose first ffn are silu(x @ gate^T) * (x @ up^T), what matmul then swiglu
  // over the gate half leave (the up half is left undefined). Same values as those two
  // ops; a backend may run both as one kernel (the CUDA GEMV for decode rows).
  virtual void matmul_swiglu(const float* x, int n, const Mat& w_gate_up, float* gu) {
    const int64_t ffn = w_gate_up.rows / 2;
    matmul(x, n, w_gate_up, nullptr, gu);
    swiglu(gu, gu + ffn, n, ffn, 2 * ffn, gu, 2 * ffn);
  }
  // GEMM inputs handed over in the weight dtype. A backend whose matmul rounds its f32
  // input rows to w's dtype anyway may take them already rounded, written so by the op
  // that produces them (norm_rows), skipping a pass over f32 rows. gemm_rows_dtype: the
  // dtype matmul_rows over w takes rows in for a forward of n rows (F32 by default);
  // mlp_rows_dtype: the same for mlp.
  virtual DType gemm_rows_dtype(const Mat& w, int n) const {
    (void)w, (void)n;
    return DType::F32;
  }
  // out = rmsnorm(x) after x += y (no add when y is null), as rows of out_dtype (F32, or
  // the dtype gemm_rows_dtype / mlp_rows_dtype gave): rmsnorm / add_rmsnorm by default.
  virtual void norm_rows(float* x, const float* y, const Mat& w, float eps, int n, void* out, DType out_dtype);
  // matmul over rows of x_dtype (F32, or gemm_rows_dtype's for w): matmul by default.
  virtual void matmul_rows(const void* x, DType x_dtype, int n, const Mat& w, const Mat* bias, float* out);
  // The MLP of n rows: out = (silu(x @ gate^T) * (x @ up^T)) @ w_down^T, with w_gate_up =
  // [gate; up], x rows of x_dtype and gu scratch of n rows of w_gate_up.rows floats (left
  // undefined). By default (F32 rows) matmul_swiglu, then matmul_strided over the gate
  // half. Where mlp_rows_dtype is not F32 the backend runs it as one op of its own (the
  // CUDA one keeps gate/up and the SwiGLU in the weight dtype, rounding as HF does).
  virtual void mlp(const void* x, DType x_dtype, int n, const Mat& w_gate_up, const Mat& w_down, float* gu, float* out);
  virtual DType mlp_rows_dtype(int n, const Mat& w_gate_up, const Mat& w_down) const {
    (void)n, (void)w_gate_up, (void)w_down;
    return DType::F32;
  }
  // x += y
  virtual void add(float* x, const float* y, int64_t n) = 0;
  // x += y over n rows of w's width, then out = rmsnorm(x): the residual add and the
  // next norm in one pass (one launch per layer boundary in decode, not two). Same
  // values as add then rmsnorm; backends without a fused kernel do exactly that.
  virtual void add_rmsnorm(float* x, const float* y, const Mat& w, float eps, int n, float* out) {
    add(x, y, static_cast<int64_t>(n) * w.rows * w.cols);
    rmsnorm(x, w, eps, n, out);
  }
  // Converts f32 rows into KV dtype rows at dst (a slab or buffer).
  virtual void store_kv(const float* src, int64_t src_stride, int n, int head_dim, DType kv_dtype, void* dst) = 0;
  // store_kv of the K and V rows of n_heads KV heads in one op (a layer's new tokens):
  // head i's n rows start at k + i * head_dim and v + i * head_dim (row stride
  // src_stride) and go to dst_k[i] and dst_v[i]. The pointer arrays are host memory,
  // read before the call returns.
  virtual void store_kv_heads(const float* k, const float* v, int64_t src_stride, int n, int n_heads, int head_dim,
                              DType kv_dtype, void* const* dst_k, void* const* dst_v) = 0;
  // rope(r), then store_kv_heads(...) of rows it may have rotated: one op, so a
  // backend can do both in one pass (the CUDA backend: one launch instead of two).
  virtual void rope_store_kv_heads(const RopeArgs& r, const float* k, const float* v, int64_t src_stride, int n,
                                   int n_heads, int head_dim, DType kv_dtype, void* const* dst_k, void* const* dst_v) {
    rope(r);
    store_kv_heads(k, v, src_stride, n, n_heads, head_dim, kv_dtype, dst_k, dst_v);
  }
  // A layer's fused QKV projection, then its RoPE and K/V store: matmul_rows(x, ...) into
  // r.x (n packed rows of w.rows = r.stride floats: r.n_heads rotated heads, Q's then K's
  // last n_kv_heads, then V's n_kv_heads), then rope_store_kv_heads(r, ...) of those K
  // and V heads. One op, so a backend can rotate and store in the GEMV's epilogue (the
  // CUDA backend for a decode token): the same values as the two ops.
  virtual void matmul_rope_store_kv(const void* x, DType x_dtype, int n, const Mat& w, const Mat* bias,
                                    const RopeArgs& r, int n_kv_heads, DType kv_dtype, void* const* dst_k,
                                    void* const* dst_v);
  // The index of the largest of n floats at x (backend memory): the first on ties, as
  // torch.argmax; returns once known. The default reads them back and scans.
  virtual int32_t argmax(const float* x, int64_t n);
  // The same index written to backend memory at dst (one int32), in stream order and
  // without waiting: a later forward can embed it before the host has seen it. The
  // default finds it as argmax() does and uploads it.
  virtual void argmax_to(const float* x, int64_t n, int32_t* dst);
  // The min(k, n) largest of n floats at x (backend memory), 1 <= k <= kMaxTopK, sorted
  // by value, larger first, equal values by smaller index (the order the sampler's
  // top-k keeps; -0 equals +0, NaN is the smallest). Returns once they are on the host.
  // The default reads the row back and sorts.
  virtual std::vector<LogitCandidate> top_k(const float* x, int64_t n, int k);
  // Waits for all work on every stream.
  virtual void synchronize() = 0;

  // ---- Offloading (docs/offload.md). The defaults are correct but synchronous:
  // a backend with real copy engines must override all of these together.

  // Host memory the copy streams read and write: pinned on a GPU, plain on the CPU.
  virtual void* alloc_host(size_t bytes);
  virtual void free_host(void* p);

  virtual Event create_event() { return Event{1}; }
  virtual void destroy_event(Event) {}
  // An event that also takes a device timestamp when recorded, for profiling: the
  // elapsed seconds between two recorded ones are read back (waiting for `to`).
  // Backends whose ops are synchronous have none (an empty Event): time them on the host.
  virtual Event create_timing_event() { return Event{}; }
  virtual double elapsed_seconds(Event from, Event to) {
    (void)from;
    (void)to;
    return 0;
  }
  // Marks the point after all work issued so far on `s`.
  virtual void record(Event, Stream) {}
  // Work issued on `s` after this call starts only once the event's latest record
  // (as of this call) has completed; an event never recorded is already complete.
  virtual void wait(Stream, Event) {}
  // The host blocks until the event's latest record has completed.
  virtual void sync(Event) { synchronize(); }

  // Host -> device on Stream::H2D, device -> host on Stream::D2H. The source must
  // stay unchanged and the destination unread until an event recorded after the
  // copy completes. Host pointers come from alloc_host.
  virtual void copy_h2d_async(void* dst, const void* src, size_t bytes) { upload(dst, src, bytes); }
  virtual void copy_d2h_async(void* dst, const void* src, size_t bytes) { download(dst, src, bytes); }
  // `rows` rows of `width` bytes; row r is at dst + r * dst_pitch and src + r * src_pitch.
  virtual void copy_h2d_2d_async(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width,
                                 size_t rows);
  virtual void copy_d2h_2d_async(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width,
                                 size_t rows);

  // Device memory accounting. alloc() fails with an Error naming --gpu-memory
  // once in_use would pass the limit (< 0: no limit).
  virtual void set_device_limit(int64_t bytes);
  virtual DeviceMemoryInfo device_memory() const { return {}; }
  virtual void reset_device_peak() {}
};

struct CpuBackendOptions {
  int n_threads = 0;             // 0: all cores
  int64_t device_limit = -1;     // bytes of the emulated device arena (-1: unlimited)
  // Each async copy sleeps this long before it runs, so a schedule that reads a
  // buffer before its copy's event (or overwrites one still in use) gives wrong
  // results in tests instead of passing by luck.
  int copy_delay_us = 0;
};

std::unique_ptr<Backend> make_cpu_backend(int n_threads = 0);
std::unique_ptr<Backend> make_cpu_backend(const CpuBackendOptions& opts);

}  // namespace headinfer
