// GEMV for a few input rows (decode): out[t, r] = sum_k x[t * x_stride + k] * W[r, k]
// (+ bias[r]) with BF16 / F16 W, f32 x and out, f32 accumulation. At n <= a few
// the product is bound by reading W once, so the kernel streams W with 16-byte loads
// and reads x (small, cached) directly as f32: no conversion launch, and the f32
// activations give the CPU backend's products exactly (only the summation order differs).
//
// A warp owns kRowsPerWarp(n) consecutive output rows: each x value loaded is used
// for that many W rows, which keeps the L1 traffic of x (32 bytes per token per 16
// bytes of W) below what the SM can serve at HBM speed for n up to kGemvMaxRows.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <type_traits>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/device_util.cuh"
#include "backend/cuda/kernels.hpp"

namespace headinfer::cuda {
namespace {

constexpr int kWarps = 8;  // warps per block
constexpr int kLine = 128;  // bytes of an L2 line

// Few rows per warp for n <= 2 (more warps to hide latency), more for larger n (x reuse).
template <int N>
constexpr int rows_per_warp() {
  return N <= 2 ? 2 : 4;
}

// Eight consecutive BF16 / F16 values (a 16-byte load) as floats; element 2i is the
// low half of word i (little endian).
__device__ __forceinline__ void unpack8(const uint4& v, __nv_bfloat16*, float* f) {
  const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = __uint_as_float(w[i] << 16);
    f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
  }
}
__device__ __forceinline__ void unpack8(const uint4& v, __half*, float* f) {
  const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 p = __half22float2(*reinterpret_cast<const __half2*>(&w[i]));
    f[2 * i] = p.x;
    f[2 * i + 1] = p.y;
  }
}

// What a GEMV does with its input and its result besides the dot products.
enum class Epi { kStore, kGlu, kAdd };

// The RMSNorm of one row x of C floats (C % 4 == 0), times the norm weight nw, into xs
// (shared memory), by the whole block. The sum of squares is taken in exactly the
// order rmsnorm_reg_kernel (norm.cu) takes it for this width, so the normalised row
// has the bits launch_rmsnorm writes: that kernel's T threads (V float4s each, a
// fused-multiply-add chain per thread, a butterfly per warp, a butterfly over the
// warps' sums) are emulated here as virtual threads of this block's threads.
constexpr int kNormMaxVirtual = 4;  // virtual threads per thread: T <= 1024 = 4 * kWarps * 32

struct NormShape {
  int chunks, V, T;  // float4s of the row, float4s per virtual thread, virtual threads
};
__host__ __device__ inline NormShape norm_shape(int C) {
  const int chunks = C / 4;
  const int V = chunks <= 1024 ? 1 : chunks <= 2048 ? 2 : 4;  // as launch_add_rmsnorm picks
  return NormShape{chunks, V, ((chunks + V - 1) / V + 31) / 32 * 32};
}

// The norm weight's values for this thread's virtual threads: loaded before the grid
// dependency wait (they depend on no kernel).
template <int V>
struct NormWeights {
  float4 w[kNormMaxVirtual][V];
};

template <int V>
__device__ __forceinline__ void load_norm_weights(NormWeights<V>& nw, const void* __restrict__ w, DType dt, int C) {
  const NormShape sh = norm_shape(C);
#pragma unroll
  for (int u = 0; u < kNormMaxVirtual; ++u) {
    const int vt = threadIdx.x + u * kWarps * 32;
#pragma unroll
    for (int j = 0; j < V; ++j) {
      const int c = vt + j * sh.T;
      const int64_t e = int64_t{c} * 4;
      nw.w[u][j] = vt < sh.T && c < sh.chunks ? make_float4(load_as_f32(w, dt, e), load_as_f32(w, dt, e + 1),
                                                            load_as_f32(w, dt, e + 2), load_as_f32(w, dt, e + 3))
                                              : make_float4(0.f, 0.f, 0.f, 0.f);
    }
  }
}

template <int V>
__device__ __forceinline__ void norm_row_to_smem(const float* __restrict__ x, const NormWeights<V>& nw, float eps,
                                                 int C, float* xs) {
  __shared__ float warp_sums[32];
  __shared__ float inv_rms;
  const NormShape sh = norm_shape(C);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float4 v[kNormMaxVirtual][V];
#pragma unroll
  for (int u = 0; u < kNormMaxVirtual; ++u) {
    const int vt = threadIdx.x + u * kWarps * 32;
    float ss = 0.f;
#pragma unroll
    for (int j = 0; j < V; ++j) {
      const int c = vt + j * sh.T;
      v[u][j] = vt < sh.T && c < sh.chunks ? reinterpret_cast<const float4*>(x)[c] : make_float4(0.f, 0.f, 0.f, 0.f);
      ss = fmaf(v[u][j].x, v[u][j].x, ss);
      ss = fmaf(v[u][j].y, v[u][j].y, ss);
      ss = fmaf(v[u][j].z, v[u][j].z, ss);
      ss = fmaf(v[u][j].w, v[u][j].w, ss);
    }
    ss = warp_sum(ss);  // virtual warp warp + u * kWarps
    if (lane == 0 && vt < sh.T) warp_sums[warp + u * kWarps] = ss;
  }
  __syncthreads();
  if (warp == 0) {
    float t = lane < sh.T / 32 ? warp_sums[lane] : 0.f;
    t = warp_sum(t);
    if (lane == 0) inv_rms = 1.0f / sqrtf(t / static_cast<float>(C) + eps);
  }
  __syncthreads();
  const float r = inv_rms;
#pragma unroll
  for (int u = 0; u < kNormMaxVirtual; ++u) {
    const int vt = threadIdx.x + u * kWarps * 32;
#pragma unroll
    for (int j = 0; j < V; ++j) {
      const int c = vt + j * sh.T;
      const float4 a = v[u][j], g = nw.w[u][j];
      if (vt < sh.T && c < sh.chunks)
        reinterpret_cast<float4*>(xs)[c] = make_float4(a.x * r * g.x, a.y * r * g.y, a.z * r * g.z, a.w * r * g.w);
    }
  }
  __syncthreads();
}

// Vector path: C % 8 == 0, W and x 16-byte aligned, x_stride % 4 == 0 (checked by the
// launcher). Lane l handles the 8-element chunks l, l + 32, ... of every row it owns,
// in that order whatever kUnroll (16-byte loads per W row in flight per step) and RW
// (rows per warp) are: the tunings differ in speed, never in bits.
//
// Epi::kGlu: W is [gate; up] (R = 2 * half rows) and the warp's two rows are gate row g
// and up row g + half; it writes silu(gate) * up to out[t * out_stride + g], the SwiGLU
// of the two rows (exactly as swiglu_kernel computes it from their separate outputs).
// Epi::kAdd: out is the residual, out[r] += the row's result (as add_kernel adds it).
// kNormV > 0 (N = 1): x is the row before its RMSNorm (weight nw), normalised by the
// block into shared memory first (norm_row_to_smem<kNormV>), so the products see the
// bits launch_rmsnorm would have written.
template <typename T, int N, int kUnroll, int RW, Epi kEpi = Epi::kStore, int kNormV = 0>
__global__ void __launch_bounds__(kWarps * 32)
    gemv_vec_kernel(const T* __restrict__ w, int R, int C, const float* __restrict__ x, int64_t x_stride,
                    const void* __restrict__ bias, DType bias_dt, float* __restrict__ out, int64_t out_stride,
                    int prefetch_lines, const void* __restrict__ nw, DType nw_dt, float eps) {
  constexpr bool kGlu = kEpi == Epi::kGlu;
  static_assert(!kGlu || RW == 2, "a SwiGLU warp owns one gate row and its up row");
  static_assert(kNormV == 0 || N == 1, "the RMSNorm prologue takes one row");
  extern __shared__ float4 xs_raw[];  // kNormV: the normalised row
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int half = R / 2;
  const int64_t rows = kGlu ? half : R;  // rows the warps own (gate rows for kGlu)
  const int64_t per_group = kGlu ? kWarps : kWarps * RW;
  const int64_t groups = (rows + per_group - 1) / per_group;
  // Block b takes row groups b, b + gridDim.x, ...: one group per block but for the norm
  // prologue, whose launch has only as many blocks as fit the device at once, so each
  // normalises the row once (a second wave of blocks would pay for it again).
  auto first_row = [&](int64_t g) { return kGlu ? g * kWarps + warp : (g * kWarps + warp) * RW; };
  auto row_ptrs = [&](int64_t r0, const uint4* (&wr)[RW]) {
    // Rows past R (the last warp) repeat row R - 1: loads stay in bounds, stores skip them.
#pragma unroll
    for (int j = 0; j < RW; ++j) {
      const int64_t r = kGlu ? r0 + j * half : r0 + j < R ? r0 + j : R - 1;
      wr[j] = reinterpret_cast<const uint4*>(w + r * C);
    }
  };
  const int chunks = C / 8;
  // W does not depend on the preceding kernel: under programmatic launch the first
  // prefetch_lines lines of each row of the first group are requested while that
  // kernel runs (and the norm weight is read), then x is waited for.
  if (first_row(blockIdx.x) < rows) {
    const uint4* wr[RW];
    row_ptrs(first_row(blockIdx.x), wr);
#pragma unroll
    for (int j = 0; j < RW; ++j)
      for (int l = lane; l < prefetch_lines; l += 32) prefetch_l2(reinterpret_cast<const char*>(wr[j]) + l * kLine);
  }
  [[maybe_unused]] NormWeights<(kNormV > 0 ? kNormV : 1)> nwr;
  if constexpr (kNormV > 0) load_norm_weights(nwr, nw, nw_dt, C);
  pdl_wait();
  pdl_launch_dependents();
  if constexpr (kNormV > 0) {
    norm_row_to_smem(x, nwr, eps, C, reinterpret_cast<float*>(xs_raw));  // every thread: barriers
    x = reinterpret_cast<const float*>(xs_raw);
  }
  // x in shared memory (kNormV) or global (read-only for the kernel's life).
  auto load_x = [](const float4* p) {
    if constexpr (kNormV > 0)
      return *p;
    else
      return __ldg(p);
  };
  for (int64_t grp = blockIdx.x; grp < groups; grp += gridDim.x) {
    const int64_t r0 = first_row(grp);
    if (r0 >= rows) continue;  // warp-uniform: the shuffles below see the whole warp
    const uint4* wr[RW];
    row_ptrs(r0, wr);
    float acc[N][RW] = {};

    int i = lane;
    // Main loop: kUnroll chunks per row loaded before any is used (bytes in flight).
    for (; i + 32 * (kUnroll - 1) < chunks; i += 32 * kUnroll) {
      uint4 wv[kUnroll][RW];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u)
#pragma unroll
        for (int j = 0; j < RW; ++j) wv[u][j] = __ldcs(wr[j] + i + 32 * u);  // streamed once: evict first
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int64_t k = static_cast<int64_t>(i + 32 * u) * 8;
        float wf[RW][8];
#pragma unroll
        for (int j = 0; j < RW; ++j) unpack8(wv[u][j], static_cast<T*>(nullptr), wf[j]);
#pragma unroll
        for (int t = 0; t < N; ++t) {
          const float4* xp = reinterpret_cast<const float4*>(x + t * x_stride + k);
          const float4 a = load_x(xp), b = load_x(xp + 1);
          const float xf[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
          for (int j = 0; j < RW; ++j)
#pragma unroll
            for (int e = 0; e < 8; ++e) acc[t][j] = fmaf(xf[e], wf[j][e], acc[t][j]);
        }
      }
    }
    // Remaining chunks of this lane, one at a time.
    for (; i < chunks; i += 32) {
      const int64_t k = static_cast<int64_t>(i) * 8;
      float wf[RW][8];
#pragma unroll
      for (int j = 0; j < RW; ++j) unpack8(__ldcs(wr[j] + i), static_cast<T*>(nullptr), wf[j]);
#pragma unroll
      for (int t = 0; t < N; ++t) {
        const float4* xp = reinterpret_cast<const float4*>(x + t * x_stride + k);
        const float4 a = load_x(xp), b = load_x(xp + 1);
        const float xf[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
        for (int j = 0; j < RW; ++j)
#pragma unroll
          for (int e = 0; e < 8; ++e) acc[t][j] = fmaf(xf[e], wf[j][e], acc[t][j]);
      }
    }

#pragma unroll
    for (int t = 0; t < N; ++t)
#pragma unroll
      for (int j = 0; j < RW; ++j) acc[t][j] = warp_sum(acc[t][j]);
    if (lane != 0) continue;
    if constexpr (kGlu) {
#pragma unroll
      for (int t = 0; t < N; ++t) {
        const float g = acc[t][0];
        out[t * out_stride + r0] = g / (1.0f + expf(-g)) * acc[t][RW - 1];
      }
    } else {
#pragma unroll
      for (int j = 0; j < RW; ++j) {
        const int64_t r = r0 + j;
        if (r >= R) break;
        const float b = bias ? load_as_f32(bias, bias_dt, r) : 0.f;
#pragma unroll
        for (int t = 0; t < N; ++t) {
          float* o = out + t * static_cast<int64_t>(R) + r;
          if constexpr (kEpi == Epi::kAdd)
            *o += acc[t][j] + b;
          else
            *o = acc[t][j] + b;
        }
      }
    }
  }
}

// Any shape and alignment (odd C, x_stride not a multiple of 4): one row per warp,
// element loads. Only reached for shapes no Llama-style model has, so kept plain.
template <typename T, int N>
__global__ void __launch_bounds__(kWarps * 32)
    gemv_scalar_kernel(const T* __restrict__ w, int R, int C, const float* __restrict__ x, int64_t x_stride,
                       const void* __restrict__ bias, DType bias_dt, float* __restrict__ out) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kWarps + warp;
  if (r >= R) return;  // warp-uniform
  pdl_wait();
  pdl_launch_dependents();
  const T* wr = w + r * C;
  float acc[N] = {};
  for (int k = lane; k < C; k += 32) {
    const float wk = to_f32(wr[k]);
#pragma unroll
    for (int t = 0; t < N; ++t) acc[t] = fmaf(x[t * x_stride + k], wk, acc[t]);
  }
#pragma unroll
  for (int t = 0; t < N; ++t) acc[t] = warp_sum(acc[t]);
  if (lane == 0) {
    const float b = bias ? load_as_f32(bias, bias_dt, r) : 0.f;
#pragma unroll
    for (int t = 0; t < N; ++t) out[t * static_cast<int64_t>(R) + r] = acc[t] + b;
  }
}

// Lines of each of R rows of C elements of T to prefetch within `bytes` in all.
template <typename T>
int prefetch_lines(int64_t R, int C, int64_t bytes) {
  const int64_t row_lines = (static_cast<int64_t>(C) * static_cast<int64_t>(sizeof(T)) + kLine - 1) / kLine;
  const int64_t lines = bytes / (R * kLine);
  return static_cast<int>(lines < row_lines ? lines : row_lines);
}

// Blocks of `kernel` (kWarps warps, smem bytes of dynamic shared memory) the device
// holds at once: occupancy per SM times SMs, asked once per kernel and device.
template <typename K>
int64_t resident_blocks(K kernel, size_t smem) {
  static int64_t cached[64] = {};
  int dev = 0;
  HI_CUDA_CHECK(cudaGetDevice(&dev));
  if (dev >= 0 && dev < 64 && cached[dev] > 0) return cached[dev];
  int per_sm = 0, sms = 0;
  HI_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kWarps * 32, smem));
  HI_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  const int64_t n = std::max(1, per_sm) * static_cast<int64_t>(std::max(1, sms));
  if (dev >= 0 && dev < 64) cached[dev] = n;
  return n;
}

// The RMSNorm prologue's operands (launch_gemv_rmsnorm); none for the other launches.
struct NormArgs {
  const void* w = nullptr;
  DType dt = DType::F32;
  float eps = 0.f;
};

template <typename T, int N, int U, int RW, Epi E = Epi::kStore, int NV = 0>
void launch_vec(const T* w, int R, int C, const float* x, int64_t x_stride, const void* bias, DType bias_dt, float* out,
                int64_t prefetch_bytes, cudaStream_t s, NormArgs na = {}) {
  constexpr int rows_per_block = kWarps * RW;
  int64_t blocks = (static_cast<int64_t>(R) + rows_per_block - 1) / rows_per_block;
  const size_t smem = NV > 0 ? sizeof(float) * static_cast<size_t>(C) : 0;
  if constexpr (NV > 0) blocks = std::min<int64_t>(blocks, resident_blocks(gemv_vec_kernel<T, N, U, RW, E, NV>, smem));
  launch_maybe_pdl(gemv_vec_kernel<T, N, U, RW, E, NV>, dim3(static_cast<unsigned>(blocks)), dim3(kWarps * 32), smem, s,
                   w, R, C, x, x_stride, bias, bias_dt, out, int64_t{0}, prefetch_lines<T>(R, C, prefetch_bytes), na.w,
                   na.dt, na.eps);
  HI_CUDA_CHECK_LAUNCH("gemv_vec_kernel");
}

// One row through the decode tuning by shape (launch_n's for N = 1), with the epilogue
// E and the norm prologue NV.
template <typename T, Epi E, int NV>
void launch_one_row(const T* w, int R, int C, const float* x, int64_t x_stride, const void* bias, DType bias_dt,
                    float* out, GemvTuning tune, cudaStream_t s, NormArgs na = {}) {
  const int64_t pf = tune.prefetch_bytes;
  if (tune.by_shape) tune = R < 16384 ? GemvTuning{4, 1, false} : GemvTuning{2, 2, false};
  if (tune.unroll == 8) return launch_vec<T, 1, 8, 1, E, NV>(w, R, C, x, x_stride, bias, bias_dt, out, pf, s, na);
  if (tune.unroll == 4 && tune.rows_per_warp == 1)
    return launch_vec<T, 1, 4, 1, E, NV>(w, R, C, x, x_stride, bias, bias_dt, out, pf, s, na);
  if (tune.unroll == 4) return launch_vec<T, 1, 4, 2, E, NV>(w, R, C, x, x_stride, bias, bias_dt, out, pf, s, na);
  if (tune.rows_per_warp == 1)
    return launch_vec<T, 1, 2, 1, E, NV>(w, R, C, x, x_stride, bias, bias_dt, out, pf, s, na);
  launch_vec<T, 1, 2, 2, E, NV>(w, R, C, x, x_stride, bias, bias_dt, out, pf, s, na);
}

template <typename T, int N>
void launch_n(const T* w, int R, int C, const float* x, int64_t x_stride, const void* bias, DType bias_dt, float* out,
              bool vec, GemvTuning tune, cudaStream_t s) {
  if (vec) {
    // Decode (n <= 2) has the tunings; more rows keep the default.
    const int64_t pf = tune.prefetch_bytes;
    if constexpr (N <= 2) {
      if (tune.by_shape) tune = N == 1 && R < 16384 ? GemvTuning{4, 1, false} : GemvTuning{2, 2, false};
      if (tune.unroll == 8) return launch_vec<T, N, 8, 1>(w, R, C, x, x_stride, bias, bias_dt, out, pf, s);
      if (tune.unroll == 4 && tune.rows_per_warp == 1)
        return launch_vec<T, N, 4, 1>(w, R, C, x, x_stride, bias, bias_dt, out, pf, s);
      if (tune.unroll == 4)
        return launch_vec<T, N, 4, rows_per_warp<N>()>(w, R, C, x, x_stride, bias, bias_dt, out, pf, s);
      if (tune.rows_per_warp == 1) return launch_vec<T, N, 2, 1>(w, R, C, x, x_stride, bias, bias_dt, out, pf, s);
    }
    launch_vec<T, N, 2, rows_per_warp<N>()>(w, R, C, x, x_stride, bias, bias_dt, out, pf, s);
  } else {
    const unsigned blocks = static_cast<unsigned>((static_cast<int64_t>(R) + kWarps - 1) / kWarps);
    launch_maybe_pdl(gemv_scalar_kernel<T, N>, dim3(blocks), dim3(kWarps * 32), 0, s, w, R, C, x, x_stride, bias,
                     bias_dt, out);
    HI_CUDA_CHECK_LAUNCH("gemv_scalar_kernel");
  }
}

template <typename T>
void launch_typed(const T* w, int R, int C, const float* x, int64_t x_stride, int n, const void* bias, DType bias_dt,
                  float* out, bool vec, GemvTuning t, cudaStream_t s) {
  static_assert(kGemvMaxRows == 8, "the switch below covers n = 1..8");
  switch (n) {
    case 1: launch_n<T, 1>(w, R, C, x, x_stride, bias, bias_dt, out, vec, t, s); break;
    case 2: launch_n<T, 2>(w, R, C, x, x_stride, bias, bias_dt, out, vec, t, s); break;
    case 3: launch_n<T, 3>(w, R, C, x, x_stride, bias, bias_dt, out, vec, t, s); break;
    case 4: launch_n<T, 4>(w, R, C, x, x_stride, bias, bias_dt, out, vec, t, s); break;
    case 5: launch_n<T, 5>(w, R, C, x, x_stride, bias, bias_dt, out, vec, t, s); break;
    case 6: launch_n<T, 6>(w, R, C, x, x_stride, bias, bias_dt, out, vec, t, s); break;
    case 7: launch_n<T, 7>(w, R, C, x, x_stride, bias, bias_dt, out, vec, t, s); break;
    default: launch_n<T, 8>(w, R, C, x, x_stride, bias, bias_dt, out, vec, t, s); break;
  }
}

template <typename T, int N>
void launch_glu_n(const T* w, int R, int C, const float* x, int64_t x_stride, float* out, int64_t out_stride,
                  cudaStream_t s) {
  const unsigned blocks = static_cast<unsigned>((static_cast<int64_t>(R / 2) + kWarps - 1) / kWarps);
  launch_maybe_pdl(gemv_vec_kernel<T, N, 2, 2, Epi::kGlu>, dim3(blocks), dim3(kWarps * 32), 0, s, w, R, C, x, x_stride,
                   nullptr, DType::F32, out, out_stride, prefetch_lines<T>(R, C, GemvTuning{}.prefetch_bytes), nullptr,
                   DType::F32, 0.f);
  HI_CUDA_CHECK_LAUNCH("gemv_vec_kernel (SwiGLU)");
}

template <typename T>
void launch_glu_typed(const T* w, int R, int C, const float* x, int64_t x_stride, int n, float* out,
                      int64_t out_stride, cudaStream_t s) {
  switch (n) {
    case 1: launch_glu_n<T, 1>(w, R, C, x, x_stride, out, out_stride, s); break;
    default: launch_glu_n<T, 2>(w, R, C, x, x_stride, out, out_stride, s); break;
  }
}

}  // namespace

bool launch_gemv_swiglu(const float* x, int64_t x_stride, int n, const void* w, DType wdt, int R, int C, float* out,
                        int64_t out_stride, cudaStream_t s) {
  const bool vec = C % 8 == 0 && x_stride % 4 == 0 && reinterpret_cast<uintptr_t>(w) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(x) % 16 == 0;
  if (!vec || n < 1 || n > 2 || R % 2 != 0 || (wdt != DType::BF16 && wdt != DType::F16)) return false;
  if (wdt == DType::BF16)
    launch_glu_typed(static_cast<const __nv_bfloat16*>(w), R, C, x, x_stride, n, out, out_stride, s);
  else
    launch_glu_typed(static_cast<const __half*>(w), R, C, x, x_stride, n, out, out_stride, s);
  return true;
}

GemvTuning gemv_tuning_from_env() {
  GemvTuning t;
  // HEADINFER_CUDA_GEMV_TUNE=U,RW: U 16-byte loads in flight per row (2, 4 or 8: 8 is
  // one row per warp whatever RW, a whole 4096-wide BF16 row in flight at once), RW rows
  // per warp for n <= 2 (1 or 2), the same for every matrix; for benchmarks.
  if (const char* e = std::getenv("HEADINFER_CUDA_GEMV_TUNE")) {
    int u = 0, rw = 0;
    if (std::sscanf(e, "%d,%d", &u, &rw) == 2) {
      t.unroll = u == 8 ? 8 : u == 4 ? 4 : 2;
      t.rows_per_warp = rw == 1 ? 1 : 2;
      t.by_shape = false;
    }
  }
  if (const char* e = std::getenv("HEADINFER_CUDA_GEMV_PREFETCH_MB")) t.prefetch_bytes = std::atoll(e) << 20;
  return t;
}

void launch_gemv(const float* x, int64_t x_stride, int n, const void* w, DType wdt, int R, int C, const void* bias,
                 DType bias_dt, float* out, cudaStream_t s, GemvTuning tune) {
  if (n <= 0 || R <= 0) return;
  HI_CHECK(n <= kGemvMaxRows, "cuda gemv: " << n << " input rows (at most " << kGemvMaxRows << ")");
  HI_CHECK(wdt == DType::BF16 || wdt == DType::F16, "cuda gemv: weight dtype " << dtype_name(wdt));
  HI_CHECK(C > 0 && x_stride >= C, "cuda gemv: input rows " << x_stride << " floats apart for " << C << " columns");
  HI_CHECK(!bias || bias_dt == DType::F32 || bias_dt == DType::BF16 || bias_dt == DType::F16,
           "cuda gemv: bias dtype " << dtype_name(bias_dt));
  // 16-byte loads need every W row and every x row 16-byte aligned.
  const bool vec = C % 8 == 0 && x_stride % 4 == 0 && reinterpret_cast<uintptr_t>(w) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(x) % 16 == 0;
  if (wdt == DType::BF16)
    launch_typed(static_cast<const __nv_bfloat16*>(w), R, C, x, x_stride, n, bias, bias_dt, out, vec, tune, s);
  else
    launch_typed(static_cast<const __half*>(w), R, C, x, x_stride, n, bias, bias_dt, out, vec, tune, s);
}

bool launch_gemv_rmsnorm(const float* x, const void* norm_w, DType norm_dt, float eps, const void* w, DType wdt, int R,
                         int C, const void* bias, DType bias_dt, float* out, cudaStream_t s, GemvTuning tune) {
  const auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  static_assert(kGemvNormMaxCols / 4 <= 2048, "norm_shape(C).V <= 2 below");
  if (R <= 0 || C % 8 != 0 || C > kGemvNormMaxCols || !aligned(x) || !aligned(w)) return false;
  if (wdt != DType::BF16 && wdt != DType::F16) return false;
  if (norm_dt != DType::F32 && norm_dt != DType::BF16 && norm_dt != DType::F16) return false;
  HI_CHECK(!bias || bias_dt == DType::F32 || bias_dt == DType::BF16 || bias_dt == DType::F16,
           "cuda gemv: bias dtype " << dtype_name(bias_dt));
  const NormArgs na{norm_w, norm_dt, eps};
  auto go = [&](auto* wt) {
    using T = std::remove_const_t<std::remove_pointer_t<decltype(wt)>>;
    // Widths up to kGemvNormMaxCols: one or two float4s per virtual thread.
    if (norm_shape(C).V == 1)
      launch_one_row<T, Epi::kStore, 1>(wt, R, C, x, C, bias, bias_dt, out, tune, s, na);
    else
      launch_one_row<T, Epi::kStore, 2>(wt, R, C, x, C, bias, bias_dt, out, tune, s, na);
  };
  if (wdt == DType::BF16)
    go(static_cast<const __nv_bfloat16*>(w));
  else
    go(static_cast<const __half*>(w));
  return true;
}

bool launch_gemv_add(const float* x, int64_t x_stride, const void* w, DType wdt, int R, int C, const void* bias,
                     DType bias_dt, float* res, cudaStream_t s, GemvTuning tune) {
  const auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  if (R <= 0 || C % 8 != 0 || x_stride % 4 != 0 || x_stride < C || !aligned(x) || !aligned(w)) return false;
  if (wdt != DType::BF16 && wdt != DType::F16) return false;
  HI_CHECK(!bias || bias_dt == DType::F32 || bias_dt == DType::BF16 || bias_dt == DType::F16,
           "cuda gemv: bias dtype " << dtype_name(bias_dt));
  if (wdt == DType::BF16)
    launch_one_row<__nv_bfloat16, Epi::kAdd, 0>(static_cast<const __nv_bfloat16*>(w), R, C, x, x_stride, bias, bias_dt,
                                                res, tune, s);
  else
    launch_one_row<__half, Epi::kAdd, 0>(static_cast<const __half*>(w), R, C, x, x_stride, bias, bias_dt, res, tune, s);
  return true;
}

}  // namespace headinfer::cuda
