// Host-callable launchers of the CUDA backend's kernels and the parameter blocks
// they share. Every launcher enqueues on the given stream and checks the launch.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "format/tensor.hpp"

namespace headinfer::cuda {

// ---- small ops ----------------------------------------------------------------
// out[i, :] = table[ids[i], :] (ids on the device; an id outside [0, rows) gives a NaN row)
void launch_embed(const int32_t* ids, int n, const void* table, DType dt, int64_t rows, int64_t cols, float* out,
                  cudaStream_t s);
// out = x / sqrt(mean(x^2) + eps) * w, rows of `cols` floats; out may alias x
// x += add (when add is not null), then out = rmsnorm(x) * w; out may alias x.
void launch_add_rmsnorm(float* x, const float* add, const void* w, DType wdt, float eps, int n, int64_t cols, float* out,
                        cudaStream_t s);
void launch_rmsnorm(const float* x, const void* w, DType wdt, float eps, int n, int64_t cols, float* out,
                    cudaStream_t s);
// launch_add_rmsnorm (add may be null) writing rows of BF16 / F16 (out_dt), each value
// rounded from the f32 the float rows would hold
void launch_add_rmsnorm_16(float* x, const float* add, const void* w, DType wdt, float eps, int n, int64_t cols,
                           void* out, DType out_dt, cudaStream_t s);
// rotate-half RoPE in place; inv_freq is a device table of head_dim / 2 doubles
void launch_rope(float* x, int64_t stride, int n_tokens, int n_heads, int head_dim, int64_t pos0,
                 const double* inv_freq, cudaStream_t s);
// out[r * out_stride + i] = silu(gate[r * in_stride + i]) * up[r * in_stride + i], r < rows, i < cols
void launch_swiglu(const float* gate, const float* up, int rows, int64_t cols, int64_t in_stride, float* out,
                   int64_t out_stride, cudaStream_t s);
// launch_swiglu over rows of BF16 / F16 (dt) values, the result rounded to dt
void launch_swiglu_16(const void* gate, const void* up, DType dt, int rows, int64_t cols, int64_t in_stride, void* out,
                      int64_t out_stride, cudaStream_t s);
void launch_add(float* x, const float* y, int64_t n, cudaStream_t s);
// *out (device) = the index of the first maximum of x[0, n) (0 when no value beats -inf)
void launch_argmax(const float* x, int64_t n, int32_t* out, cudaStream_t s);
// The k largest of n values (1 <= k <= n): every value above the k-th largest and, of
// those equal to it, the ones with the smallest indices; unsorted, into out_v / out_i.
void launch_top_k(const float* x, int64_t n, int k, float* out_v, int32_t* out_i, cudaStream_t s);
// n rows of head_dim floats (row stride src_stride) -> contiguous rows of dt
void launch_store_kv(const float* src, int64_t src_stride, int n, int head_dim, DType dt, void* dst, cudaStream_t s);
// store_kv of n_heads heads in one launch: head i's rows at k / v + i * head_dim ->
// dst_k[i] / dst_v[i] (host arrays; passed by value to the kernel in groups of kStoreKvHeads)
constexpr int kStoreKvHeads = 64;
void launch_store_kv_heads(const float* k, const float* v, int64_t src_stride, int n, int n_heads, int head_dim,
                           DType dt, void* const* dst_k, void* const* dst_v, cudaStream_t s);
// Destinations of up to kStoreKvHeads heads, passed by value (kernel parameter
// space), so a layer's store needs no device-side pointer table.
struct KvHeadDsts {
  void* k[kStoreKvHeads];
  void* v[kStoreKvHeads];
};
// launch_rope, then launch_store_kv_heads of the n_tokens rows, in one launch (a block
// per token rotates its row, then stores its K and V rows; for a few tokens of the fused
// [q | k | v] layout, a thread per rotated pair); n_kv_heads <= kStoreKvHeads.
void launch_rope_store_kv_heads(float* x, int64_t stride, int n_tokens, int n_heads, int head_dim, int64_t pos0,
                                const double* inv_freq, const float* k, const float* v, int64_t src_stride,
                                int n_kv_heads, DType dt, void* const* dst_k, void* const* dst_v, cudaStream_t s);
// contiguous f32 -> F16 / BF16 (round to nearest even)
void launch_convert_f32(const float* x, int64_t n, DType dt, void* dst, cudaStream_t s);
// rows of cols floats, x_stride apart -> packed rows of F16 / BF16
void launch_convert_f32_rows(const float* x, int rows, int64_t cols, int64_t x_stride, DType dt, void* dst,
                             cudaStream_t s);
// out[i, j] = bias[j] for i < n, j < cols
void launch_fill_bias(float* out, int n, int64_t cols, const void* bias, DType dt, cudaStream_t s);
// out[t * R + r] = sum_k x[t * x_stride + k] * w[r * C + k] (+ bias[r]) for t < n <=
// kGemvMaxRows: the memory-bound few-row matmul (decode). w BF16 / F16 [R, C]; bias
// (may be null) F32 / F16 / BF16; f32 accumulation. 16-byte vector loads when C % 8 == 0,
// x_stride % 4 == 0 and w, x are 16-byte aligned, else a scalar kernel.
constexpr int kGemvMaxRows = 8;
constexpr int kGemvDefaultRows = 2;  // where it beats cuBLAS on the GPU machine
// Speed knobs of the vector path for n <= 2 (bit-identical results whatever they are).
struct GemvTuning {
  int unroll = 2;         // 16-byte loads per W row in flight per lane and step: 2, 4 or 8 (8: one row per warp)
  int rows_per_warp = 2;  // 1 or 2
  // By the matrix (the default): one row of x and fewer than 16384 W rows take (4, 1),
  // the rest (2, 2): the fastest of the four on the H200 for Llama-3-8B's projections
  // (docs/gpu.md, 2026-12-02). False: the two fields above, always.
  bool by_shape = true;
  // By the matrix, for one row of x and W with no more rows than columns (Llama-3-8B's O
  // and down projections): (long_unroll, long_rows_per_warp), (4, 1) by default.
  // HEADINFER_CUDA_GEMV_TUNE_LONG=U,RW sets them, for benchmarks.
  int long_unroll = 4, long_rows_per_warp = 1;
  // Bytes of W the kernel's blocks ask L2 for before their grid dependency wait, spread
  // evenly over the rows (at most whole rows): a block resident while the kernel before
  // it runs (norms, RoPE, attention, combine: latency-bound, DRAM mostly idle) pulls in
  // its rows meanwhile. Capped below L2 so early lines are not evicted before use.
  int64_t prefetch_bytes = int64_t{8} << 20;
};
// HEADINFER_CUDA_GEMV_TUNE=U,RW (fixed, else by shape); HEADINFER_CUDA_GEMV_PREFETCH_MB
GemvTuning gemv_tuning_from_env();
void launch_gemv(const float* x, int64_t x_stride, int n, const void* w, DType wdt, int R, int C, const void* bias,
                 DType bias_dt, float* out, cudaStream_t s, GemvTuning tune = {});
// W = [gate; up] (R = 2 * ffn rows), n = 1 or 2 rows of x: out[t * out_stride + g] =
// silu(gate_g) * up_g for g < ffn, each dot product with the bits launch_gemv gives it
// and the SwiGLU with launch_swiglu's. False (nothing launched) where the vector path's
// alignment or the shape does not allow it.
bool launch_gemv_swiglu(const float* x, int64_t x_stride, int n, const void* w, DType wdt, int R, int C, float* out,
                        int64_t out_stride, cudaStream_t s);
// A decode token's fused QKV projection, rotated and stored: out[r] = W x (+ bias) for
// the R = (n_rot + n_kv) * head_dim rows [q | k | v] (each sum with launch_gemv's bits),
// the first n_rot heads (Q's, then K's n_kv) rotated at pos as launch_rope_store_kv_heads
// rotates them, and the K and V heads' rows stored to dst_k[i] / dst_v[i] in kv_dt.
// False (nothing launched) where the vector path's alignment or the shape does not allow it.
bool launch_gemv_rope_store(const float* x, const void* w, DType wdt, int R, int C, const void* bias, DType bias_dt,
                            float* out, int n_rot, int n_kv, int head_dim, int64_t pos, const double* inv_freq,
                            DType kv_dt, void* const* dst_k, void* const* dst_v, int64_t prefetch_bytes,
                            cudaStream_t s);
// merge of two partial attention results by log-sum-exp (see Backend::merge_attention)
void launch_merge_attention(float* o_a, float* lse_a, const float* o_b, const float* lse_b, int n_q, int n_qh,
                            int head_dim, int64_t stride_a, int64_t stride_b, cudaStream_t s);

// The cuDNN path's epilogue: o [n_q][n_heads * n_qh][head_dim] of dt and stats
// [n_heads * n_qh][n_q] into f32 rows of out (row stride out_stride) and lse (KV head j's
// [n_q * n_qh] at lse + j * lse_head_stride); first: store, else merge by log-sum-exp
// with what out and lse hold.
void launch_sdpa_merge(const void* o, DType dt, const float* stats, int n_q, int n_qh, int n_heads,
                       int64_t lse_head_stride, int head_dim, float* out, int64_t out_stride, float* lse, bool first,
                       cudaStream_t s);

// ---- attention ----------------------------------------------------------------
// Attention rows are (token, head) pairs: row r = t * n_qh + h, at absolute position
// q_pos0 + t. Keys are the concatenation of the pieces ("global key index");
// block (x, y) handles a tile of rows against split y of the global keys.
constexpr int kMaxPieces = 32;

struct PieceTable {
  const void* k[kMaxPieces];
  const void* v[kMaxPieces];
  int64_t pos0[kMaxPieces];
  int64_t start[kMaxPieces + 1];  // prefix sums of n_tokens; start[n] = total keys
  // Elements from KV head h's K / V run to head h + 1's (launches over several heads;
  // unused when n_heads <= 1).
  int64_t head_stride[kMaxPieces];
  int n;
};

struct AttnParams {
  const float* q;
  int64_t q_stride;
  int n_rows;  // n_q * n_qh
  int n_qh;
  int head_dim;
  int causal;
  int64_t q_pos0;
  float scale_log2;  // softmax scale * log2(e)
  PieceTable pieces;
  int64_t keys_per_split;  // keys of split y: [y * keys_per_split, (y + 1) * keys_per_split)
  // Output of row r = (t, h) from split y, slot = slot_base + y:
  //   o[slot * o_slot_stride + t * o_tok_stride + h * head_dim + d], lse[slot * lse_slot_stride + r]
  // (normalised over the split's keys; lse = -inf and o = 0 when every key was masked)
  float* o;
  int64_t o_tok_stride;
  int64_t o_slot_stride;
  float* lse;  // may be null
  int64_t lse_slot_stride;
  int slot_base;
  // Several KV heads in one launch (gridDim.z = n_heads; only launch_attention_decode
  // takes n_heads > 1): head h reads q + h * q_head_stride and keys at h *
  // pieces.head_stride[i] elements further, and writes o + h * q_head_stride and lse +
  // h * lse_head_stride. Each head's blocks do exactly what a launch of that head alone does.
  int n_heads;  // 0 or 1: one head
  int64_t q_head_stride;
  int64_t lse_head_stride;
  // Keys at positions below this were written before the previous kernel of the stream
  // (AttnArgs::settled_pos): a kernel may copy them before its grid dependency wait.
  int64_t settled_pos;
};

// Tensor-core flash attention: BF16 or F16 KV, head_dim 64 or 128, 16-byte aligned
// K/V pieces. A block is `warps` warps (4 or 8) of 16 query rows each
// (attention_mma_rows(warps) rows); key tile kMmaKeys (keys_per_split a multiple).
constexpr int kMmaKeys = 64;
// `warps` kMmaWide: the 4 x 32-row block of attention_prefill_wide.cu.
constexpr int kMmaWide = -4;
bool attention_mma_supported(DType kv, int head_dim);
int attention_mma_rows(int warps);
// Resident blocks per SM of the tensor-core kernel (occupancy query).
int attention_mma_blocks_per_sm(DType kv, int head_dim, int warps);
void launch_attention_mma(const AttnParams& p, int n_splits, DType kv, int warps, cudaStream_t s);
// The same with 4 warps of 32 rows each (two m16 tiles per warp, Q in shared memory):
// attention_prefill_wide.cu.
int attention_mma_wide_rows();
int attention_mma_wide_blocks_per_sm(DType kv, int head_dim);
void launch_attention_mma_wide(const AttnParams& p, int n_splits, DType kv, cudaStream_t s);
// `warps` kMmaWarpgroup / kMmaWarpgroup2: Hopper's warpgroup MMA, blocks of one or two
// warpgroups of 64 rows (sm90/attention_prefill_wgmma.cu; compute capability 9.0 only).
constexpr int kMmaWarpgroup = -64;
constexpr int kMmaWarpgroup2 = -128;
bool attention_wgmma_available();
int attention_wgmma_rows(int groups);
int attention_wgmma_blocks_per_sm(DType kv, int head_dim, int groups);
void launch_attention_wgmma(const AttnParams& p, int n_splits, DType kv, int groups, cudaStream_t s);

// CUDA-core flash attention for any KV dtype and head_dim <= kSimtMaxHeadDim; also
// the split-KV decode kernel. Rows per block kSimtRows, key tile kSimtKeys.
constexpr int kSimtRows = 32;
constexpr int kSimtKeys = 32;
constexpr int kSimtMaxHeadDim = 256;
void launch_attention_simt(const AttnParams& p, int n_splits, DType kv, cudaStream_t s);

// Split-KV decode for at most kSimtRows rows (decode, small chunks): BF16 / F16 / F32
// KV, head_dim 64 or 128, 16-byte aligned pieces. A block is kDecodeWarps warps over
// attention_decode_rows(n_rows) rows (<= 8) and reads its key split once.
constexpr int kDecodeWarps = 4;
constexpr int kDecodeTileKeys = 64;  // split sizes a multiple of this (of every key tile it uses)
bool attention_decode_supported(DType kv, int head_dim);
int attention_decode_rows(int n_rows);
// Resident blocks per SM of the decode kernel for these shapes (occupancy query).
int attention_decode_blocks_per_sm(DType kv, int head_dim, int n_rows);
void launch_attention_decode(const AttnParams& p, int n_splits, DType kv, cudaStream_t s);
// The same contract on tensor cores for BF16/F16 KV (attention_decode_mma.cu): blocks
// of kDecodeWarps warps over one 16-row tile, q and P multiplied as high + low parts;
// keys_as_m: over one 8-row tile, the keys on the MMA's M side (half the MMAs for 8
// rows or fewer).
int attention_decode_mma_rows(bool keys_as_m);
int attention_decode_mma_blocks_per_sm(DType kv, int head_dim, bool keys_as_m);
void launch_attention_decode_mma(const AttnParams& p, int n_splits, DType kv, bool keys_as_m, cudaStream_t s);

// Combines n_slots partial results ([slot][row][head_dim] and [slot][row]) into
// out[t * out_stride + h * head_dim + d] and lse[r] (lse may be null).
void launch_attention_combine(const float* part_o, const float* part_lse, int n_slots, int n_rows, int n_qh,
                              int head_dim, float* out, int64_t out_stride, float* lse, cudaStream_t s);

}  // namespace headinfer::cuda
