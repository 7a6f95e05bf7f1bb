// Decode GEMVs whose output rows pair up, with the elementwise op over each pair in the
// epilogue: the fused QKV projection with its RoPE and K/V store (rotate-half pairs
// value i of a head with value i + head_dim / 2), and the gate/up projection with its
// SwiGLU (gate row g with up row g + ffn).
//
// Why: in a decode layer the RoPE + KV store and the SwiGLU were kernels of their own,
// each one more short, latency-bound step and kernel boundary in the layer's chain.
//
// A block of kWarps warps owns P = kWarps / 2 * RW pairs: warps [0, kWarps / 2) stream
// the RW rows each of the pairs' first rows, warps [kWarps / 2, kWarps) those of their
// partners, `offset` rows further. So each warp streams the rows the plain GEMV's warp
// would (the same tuning: one row a warp with 4 loads in flight for QKV, two adjacent
// rows with 2 for gate/up), and each row's sum comes from gemv_warp_dot (the GEMV's
// bits). The sums meet in shared memory, plus the bias as the GEMV adds it, and one
// thread a (pair, token) runs the epilogue with the expressions of the kernels it
// replaces (rope_angle / rotate_pair, swiglu_value): the same bits as the two launches.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/device_util.cuh"
#include "backend/cuda/gemv_dot.cuh"
#include "backend/cuda/kernels.hpp"
#include "backend/cuda/rope_math.cuh"

namespace headinfer::cuda {
namespace {

constexpr int kWarps = 8;
constexpr int kSideWarps = kWarps / 2;

// Where a block's pairs are: segment blockIdx.x / groups (segments start seg_stride
// rows apart), pairs [(blockIdx.x % groups) * P, + P) of it, partners `offset` further.
struct PairRows {
  int groups;
  int64_t seg_stride, offset;
};

// RoPE over heads [0, n_rot) (Q's, then K's last n_kv of them) and the K/V store of
// heads [n_rot - n_kv, n_rot + n_kv); a segment is a head, a pair (i, i + head_dim / 2).
template <typename KvT>
struct RopeStoreEpilogue {
  float* out;
  int n_rot, n_kv, head_dim;
  int64_t pos;
  const double* inv_freq;
  KvHeadDsts dst;
  // Before the grid dependency wait, the pair's angle (it depends on nothing the kernel
  // before wrote): its cos and sin.
  __device__ float2 prepare(int head, int i) const {
    float c = 1.f, s = 0.f;
    if (head < n_rot) rope_angle(pos, inv_freq[i], c, s);
    return make_float2(c, s);
  }
  __device__ void operator()(int /*t*/, int head, int i, float2 cs, float y0, float y1) const {
    if (head < n_rot) rotate_pair(y0, y1, cs.x, cs.y, y0, y1);
    const int half = head_dim / 2;
    float* o = out + static_cast<int64_t>(head) * head_dim;
    o[i] = y0;
    o[i + half] = y1;
    const int kv = head - (n_rot - n_kv);  // K head kv (< n_kv), or V head kv - n_kv
    if (kv < 0) return;
    KvT* d = static_cast<KvT*>(kv < n_kv ? dst.k[kv] : dst.v[kv - n_kv]);
    d[i] = from_f32<KvT>(y0);
    d[i + half] = from_f32<KvT>(y1);
  }
};

// silu(gate) * up into out[t * out_stride + g]; one segment, pair g = (g, g + ffn).
struct SwigluEpilogue {
  float* out;
  int64_t out_stride;
  __device__ float2 prepare(int, int) const { return {}; }
  __device__ void operator()(int t, int /*seg*/, int g, float2 /*prepared*/, float gate, float up) const {
    out[t * out_stride + g] = swiglu_value(gate, up);
  }
};

// N tokens of x (rows x_stride floats apart); Epi as above. Every pair the grid names
// exists (the launchers check the shape), so no bounds below.
template <typename T, int N, int kUnroll, int RW, typename Epi>
__global__ void __launch_bounds__(kWarps * 32)
    gemv_pairs_kernel(const T* __restrict__ w, int C, const float* __restrict__ x, int64_t x_stride,
                      const void* __restrict__ bias, DType bias_dt, PairRows pr, Epi epi, int prefetch_lines) {
  constexpr int P = kSideWarps * RW;
  __shared__ float sums[kWarps][RW][N];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int seg = blockIdx.x / pr.groups;
  const int p0 = (blockIdx.x - seg * pr.groups) * P;  // the block's first pair within its segment
  const int64_t row0 = seg * pr.seg_stride + p0 + (warp % kSideWarps) * RW + (warp / kSideWarps) * pr.offset;
  const uint4* wr[RW];
#pragma unroll
  for (int j = 0; j < RW; ++j) wr[j] = reinterpret_cast<const uint4*>(w + (row0 + j) * C);
  const float2 prepared = threadIdx.x < P ? epi.prepare(seg, p0 + threadIdx.x) : float2{};
  gemv_prefetch_then_wait<RW>(wr, prefetch_lines, lane);
  float acc[N][RW];
  gemv_warp_dot<T, N, kUnroll, RW>(wr, C / 8, x, x_stride, lane, acc);
  if (lane == 0) {
#pragma unroll
    for (int j = 0; j < RW; ++j) {
      const float b = bias ? load_as_f32(bias, bias_dt, row0 + j) : 0.f;
#pragma unroll
      for (int t = 0; t < N; ++t) sums[warp][j][t] = acc[t][j] + b;
    }
  }
  __syncthreads();
  if (threadIdx.x >= P) return;
  const int p = threadIdx.x, wa = p / RW, j = p % RW;
#pragma unroll
  for (int t = 0; t < N; ++t) epi(t, seg, p0 + p, prepared, sums[wa][j][t], sums[kSideWarps + wa][j][t]);
}

template <typename T, int N, int kUnroll, int RW, typename Epi>
void launch_pairs(const T* w, int C, const float* x, int64_t x_stride, const void* bias, DType bias_dt, int R,
                  const PairRows& pr, unsigned blocks, const Epi& epi, int64_t prefetch_bytes, cudaStream_t s) {
  launch_maybe_pdl(gemv_pairs_kernel<T, N, kUnroll, RW, Epi>, dim3(blocks), dim3(kWarps * 32), 0, s, w, C, x, x_stride,
                   bias, bias_dt, pr, epi, gemv_prefetch_lines<T>(R, C, prefetch_bytes));
  HI_CUDA_CHECK_LAUNCH("gemv_pairs_kernel");
}

// f(T{}) with T the C++ type of a BF16 / F16 weight dtype; false for others.
template <typename F>
bool by_weight_type(DType wdt, F&& f) {
  if (wdt == DType::BF16) return f(__nv_bfloat16{}), true;
  if (wdt == DType::F16) return f(__half{}), true;
  return false;
}

// The plain GEMV's vector path: 16-byte W chunks, x rows of 16-byte quads.
bool vector_path(const void* w, int C, const float* x, int64_t x_stride) {
  return C % 8 == 0 && aligned_to(w, 16) && aligned_to(x, 16) && x_stride % 4 == 0;
}

// QKV: one row a warp, 4 loads in flight (the plain GEMV's by-shape tuning for it).
constexpr int kQkvUnroll = 4, kQkvRows = 1;
// Gate/up: two adjacent rows a warp, 2 loads in flight (likewise).
constexpr int kGluUnroll = 2, kGluRows = 2;

}  // namespace

bool launch_gemv_rope_store(const float* x, const void* w, DType wdt, int R, int C, const void* bias, DType bias_dt,
                            float* out, int n_rot, int n_kv, int head_dim, int64_t pos, const double* inv_freq,
                            DType kv_dt, void* const* dst_k, void* const* dst_v, int64_t prefetch_bytes,
                            cudaStream_t s) {
  constexpr int P = kSideWarps * kQkvRows;
  const bool shape = head_dim > 0 && head_dim % (2 * P) == 0 && n_kv >= 1 && n_kv <= kStoreKvHeads && n_rot >= n_kv &&
                     static_cast<int64_t>(n_rot + n_kv) * head_dim == R;
  if (!shape || !vector_path(w, C, x, C)) return false;
  if (bias && bias_dt != DType::F32 && bias_dt != DType::BF16 && bias_dt != DType::F16) return false;
  if (kv_dt != DType::F32 && kv_dt != DType::F16 && kv_dt != DType::BF16) return false;
  KvHeadDsts d{};
  for (int i = 0; i < n_kv; ++i) {
    d.k[i] = dst_k[i];
    d.v[i] = dst_v[i];
  }
  const PairRows pr{head_dim / 2 / P, head_dim, head_dim / 2};
  const unsigned blocks = static_cast<unsigned>(R / (2 * P));
  return by_weight_type(wdt, [&](auto wtag) {
    using T = decltype(wtag);
    auto go = [&](auto kvtag) {
      using KvT = decltype(kvtag);
      const RopeStoreEpilogue<KvT> epi{out, n_rot, n_kv, head_dim, pos, inv_freq, d};
      launch_pairs<T, 1, kQkvUnroll, kQkvRows>(static_cast<const T*>(w), C, x, C, bias, bias_dt, R, pr, blocks, epi,
                                               prefetch_bytes, s);
    };
    if (kv_dt == DType::F32)
      go(float{});
    else if (kv_dt == DType::F16)
      go(__half{});
    else
      go(__nv_bfloat16{});
  });
}

bool launch_gemv_swiglu(const float* x, int64_t x_stride, int n, const void* w, DType wdt, int R, int C, float* out,
                        int64_t out_stride, cudaStream_t s) {
  constexpr int P = kSideWarps * kGluRows;
  const int ffn = R / 2;
  if (n < 1 || n > 2 || R % 2 != 0 || ffn % P != 0 || !vector_path(w, C, x, x_stride)) return false;
  const PairRows pr{ffn / P, 0, ffn};
  const unsigned blocks = static_cast<unsigned>(ffn / P);
  const SwigluEpilogue epi{out, out_stride};
  const int64_t pf = GemvTuning{}.prefetch_bytes;
  return by_weight_type(wdt, [&](auto wtag) {
    using T = decltype(wtag);
    if (n == 1)
      launch_pairs<T, 1, kGluUnroll, kGluRows>(static_cast<const T*>(w), C, x, x_stride, nullptr, DType::F32, R, pr,
                                               blocks, epi, pf, s);
    else
      launch_pairs<T, 2, kGluUnroll, kGluRows>(static_cast<const T*>(w), C, x, x_stride, nullptr, DType::F32, R, pr,
                                               blocks, epi, pf, s);
  });
}

}  // namespace headinfer::cuda
