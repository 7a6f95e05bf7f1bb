// A decode layer's second half (one token) as one persistent kernel: the out
// projection, the residual add and the ffn RMSNorm, the gate/up projection with its
// SwiGLU, the down projection and, where a layer follows, its residual add, attention
// norm and QKV projection, in phases separated by grid-wide barriers instead of seven
// launches. Every block stays resident for the whole kernel, so before
// arriving at a barrier its warps ask L2 for the first W lines of their rows in the
// next phase: the weight stream need not drain and refill between the projections, the
// cost that programmatic launch leaves at each of the five kernel boundaries.
//
// The bits are those of the ops it replaces: each dot product is the GEMV's
// (gemv_dot.cuh), the SwiGLU is swiglu_kernel's expression on the GEMV's stored values,
// and the norm is rmsnorm_reg_kernel's summation emulated by the block's warps.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/device_util.cuh"
#include "backend/cuda/gemv_dot.cuh"
#include "backend/cuda/kernels.hpp"

namespace headinfer::cuda {
namespace {

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kLine = 128;       // bytes of an L2 line
// 16-byte loads in flight per lane: the grid is small (about two blocks an SM), so each
// warp keeps 4 KiB of W in flight.
constexpr int kUnrollRow = 8;   // one row a warp (out and down projections)
constexpr int kUnrollPair = 4;  // a gate row and its up row
constexpr int kNormVirtual = 4;  // norm kernel warps each block warp plays (32 of them at most)
static_assert(kWarps * kNormVirtual >= 32, "the block's warps cover the norm kernel's 32 warps");

// Every block of the grid arrives before any leaves. sync[0] counts arrivals, sync[1]
// is the generation the last arrival advances (after zeroing the count for the next
// barrier, so the kernel ends with the count at zero for the next launch). The grid is
// never larger than what fits on the device at once; a plain launch still relies on no
// other work holding SMs meanwhile (another process's kernels), a cooperative launch
// (HEADINFER_CUDA_DECODE_MLP=coop) has the driver guarantee it.
__device__ __forceinline__ void grid_barrier(unsigned* sync) {
  __syncthreads();
  if (threadIdx.x == 0) {
    volatile unsigned* gen = sync + 1;
    const unsigned seen = *gen;  // read before arriving: it cannot advance before this block arrives
    __threadfence();             // this block's writes, and the read above, before the arrival
    if (atomicAdd(sync, 1u) == gridDim.x - 1) {
      atomicExch(sync, 0u);
      __threadfence();
      atomicAdd(sync + 1, 1u);
    } else {
      while (*gen == seen) __nanosleep(32);
    }
    __threadfence();
  }
  __syncthreads();
}

template <typename T>
__device__ __forceinline__ const uint4* row_ptr(const void* w, int64_t r, int cols) {
  return reinterpret_cast<const uint4*>(static_cast<const T*>(w) + r * cols);
}

// The first `lines` L2 lines of a row, spread over the warp's lanes.
__device__ __forceinline__ void prefetch_row(const uint4* row, int lines) {
  for (int l = threadIdx.x & 31; l < lines; l += 32) prefetch_l2(reinterpret_cast<const char*>(row) + l * kLine);
}

// x += add; out = rmsnorm(x) * w over one row of cols floats (cols / 4 <= 1024), summed
// as rmsnorm_reg_kernel sums it with one float4 per thread over `threads` threads:
// block warp w plays that kernel's warps w, w + kWarps, ... The sum goes to sum_s and
// the normalised row to out_s (shared memory); x itself is left as it was (other blocks
// still read it) unless it is sum_s (kXShared).
template <bool kXShared>
__device__ __forceinline__ void add_rmsnorm_to_shared(const float* x, const float* add, const void* w, DType wdt,
                                                      float eps, int cols, float* sum_s, float* out_s) {
  __shared__ float warp_sums[32];
  __shared__ float inv_rms;
  const int chunks = cols / 4;
  const int vwarps = (chunks + 31) / 32;  // the norm kernel's warps (one float4 a thread)
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const float4* xr = reinterpret_cast<const float4*>(x);
  const float4* ar = reinterpret_cast<const float4*>(add);
  float4 v[kNormVirtual], wv[kNormVirtual];
#pragma unroll
  for (int k = 0; k < kNormVirtual; ++k) {
    const int c = (warp + k * kWarps) * 32 + lane;
    v[k] = wv[k] = make_float4(0.f, 0.f, 0.f, 0.f);
    if (c < chunks) {
      const float4 xv = kXShared ? xr[c] : __ldcg(xr + c);
      const float4 a = __ldcg(ar + c);  // add: written by other blocks of this grid
      const int64_t e = int64_t{c} * 4;
      wv[k] = make_float4(load_as_f32(w, wdt, e), load_as_f32(w, wdt, e + 1), load_as_f32(w, wdt, e + 2),
                          load_as_f32(w, wdt, e + 3));
      v[k] = make_float4(xv.x + a.x, xv.y + a.y, xv.z + a.z, xv.w + a.w);
      reinterpret_cast<float4*>(sum_s)[c] = v[k];
    }
  }
#pragma unroll
  for (int k = 0; k < kNormVirtual; ++k) {
    float ss = 0.f;
    ss = fmaf(v[k].x, v[k].x, ss);
    ss = fmaf(v[k].y, v[k].y, ss);
    ss = fmaf(v[k].z, v[k].z, ss);
    ss = fmaf(v[k].w, v[k].w, ss);
    ss = warp_sum(ss);
    const int vw = warp + k * kWarps;
    if (lane == 0 && vw < vwarps) warp_sums[vw] = ss;
  }
  __syncthreads();
  if (threadIdx.x < 32) {
    float t = lane < vwarps ? warp_sums[lane] : 0.f;
    t = warp_sum(t);
    if (lane == 0) inv_rms = 1.0f / sqrtf(t / static_cast<float>(cols) + eps);
  }
  __syncthreads();
  const float r = inv_rms;
#pragma unroll
  for (int k = 0; k < kNormVirtual; ++k) {
    const int c = (warp + k * kWarps) * 32 + lane;
    if (c < chunks)
      reinterpret_cast<float4*>(out_s)[c] =
          make_float4(v[k].x * r * wv[k].x, v[k].y * r * wv[k].y, v[k].z * r * wv[k].z, v[k].w * r * wv[k].w);
  }
  __syncthreads();
}

// n floats from global memory (written earlier in this grid: read through L2) to shared.
__device__ __forceinline__ void stage(const float* src, int n, float* dst) {
  for (int c = threadIdx.x; c < n / 4; c += kThreads)
    reinterpret_cast<float4*>(dst)[c] = __ldcg(reinterpret_cast<const float4*>(src) + c);
  __syncthreads();
}

// x = sum_s and h = norm_s, this block's share.
__device__ __forceinline__ void write_residual_and_norm(const DecodeMlpArgs& a, const float* sum_s,
                                                        const float* norm_s) {
  for (int c = blockIdx.x * kThreads + threadIdx.x; c < a.hidden / 4; c += gridDim.x * kThreads) {
    reinterpret_cast<float4*>(a.x)[c] = reinterpret_cast<const float4*>(sum_s)[c];
    reinterpret_cast<float4*>(a.h)[c] = reinterpret_cast<const float4*>(norm_s)[c];
  }
}

// out[r] = W[r] . xs (+ bias[r]) for the rows r = first, first + stride, ...: one row a
// warp at a time, stored as the GEMV stores it (acc + bias, or acc + 0.f: -0 -> +0 there too).
template <typename T>
__device__ __forceinline__ void project_rows(const void* w, int rows, int cols, const float* xs, const void* bias,
                                             DType bias_dt, float* out, int first, int stride) {
  for (int r = first; r < rows; r += stride) {
    const uint4* wr[1] = {row_ptr<T>(w, r, cols)};
    float acc[1];
    warp_dot_rows<T, kUnrollRow, 1>(wr, cols / 8, xs, acc);
    if ((threadIdx.x & 31) == 0) out[r] = acc[0] + (bias ? load_as_f32(bias, bias_dt, r) : 0.f);
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) decode_mlp_kernel(const DecodeMlpArgs a) {
  extern __shared__ float4 smem4[];
  float* xs = reinterpret_cast<float*>(smem4);  // the current projection's input row
  float* sum_s = xs + a.xs_floats;               // x + the out projection (the new residual)
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int gw = blockIdx.x * kWarps + warp, n_warps = gridDim.x * kWarps;
  const int h_chunks = a.hidden / 8;

  // Phase 1: tmp = attn @ Wo^T. Wo does not depend on the kernel before: its first
  // lines are asked for before the grid dependency wait.
  if (gw < a.hidden) prefetch_row(row_ptr<T>(a.wo, gw, a.q_width), a.prefetch_lines[0]);
  pdl_wait();
  pdl_launch_dependents();
  stage(a.attn, a.q_width, xs);
  project_rows<T>(a.wo, a.hidden, a.q_width, xs, nullptr, DType::F32, a.tmp, gw, n_warps);
  if (gw < a.ffn) {
    prefetch_row(row_ptr<T>(a.w_gate_up, gw, a.hidden), a.prefetch_lines[1]);
    prefetch_row(row_ptr<T>(a.w_gate_up, gw + a.ffn, a.hidden), a.prefetch_lines[1]);
  }
  grid_barrier(a.sync);

  // Phase 2: the residual add and the ffn norm (every block, into its shared memory),
  // then gu[g] = silu(gate_g) * up_g.
  add_rmsnorm_to_shared<false>(a.x, a.tmp, a.norm_w, a.norm_dt, a.eps, a.hidden, sum_s, xs);
  for (int g = gw; g < a.ffn; g += n_warps) {
    const uint4* wr[2] = {row_ptr<T>(a.w_gate_up, g, a.hidden), row_ptr<T>(a.w_gate_up, g + a.ffn, a.hidden)};
    float acc[2];
    warp_dot_rows<T, kUnrollPair, 2>(wr, h_chunks, xs, acc);
    if (lane == 0) {
      const float gate = acc[0] + 0.f, up = acc[1] + 0.f;  // the values the GEMV stores
      a.gu[g] = gate / (1.0f + expf(-gate)) * up;
    }
  }
  if (gw < a.hidden) prefetch_row(row_ptr<T>(a.w_down, gw, a.ffn), a.prefetch_lines[2]);
  grid_barrier(a.sync);

  // Every block has read x and tmp: the residual and the norm go out, a share each
  // (with a next layer, its own residual and norm do instead, after the down projection).
  if (a.wqkv == nullptr) write_residual_and_norm(a, sum_s, xs);
  __syncthreads();

  // Phase 3: tmp = gu (the SwiGLU half) @ Wdown^T.
  stage(a.gu, a.ffn, xs);
  project_rows<T>(a.w_down, a.hidden, a.ffn, xs, nullptr, DType::F32, a.tmp, gw, n_warps);
  if (a.wqkv == nullptr) return;
  if (gw < a.qkv_rows) prefetch_row(row_ptr<T>(a.wqkv, gw, a.hidden), a.prefetch_lines[3]);
  grid_barrier(a.sync);

  // Phase 4: the next layer's residual add (to the sum every block kept) and attention
  // norm; nothing reads x or h in memory from here on, so they go out at once.
  add_rmsnorm_to_shared<true>(sum_s, a.tmp, a.next_norm_w, a.next_norm_dt, a.eps, a.hidden, sum_s, xs);
  write_residual_and_norm(a, sum_s, xs);
  // Phase 5: qkv = h @ Wqkv^T (+ bias), as the GEMV adds it.
  project_rows<T>(a.wqkv, a.qkv_rows, a.hidden, xs, a.bqkv, a.bqkv_dt, a.qkv, gw, n_warps);
}

template <typename T>
bool launch_typed(DecodeMlpArgs a, int sm_count, cudaStream_t s) {
  constexpr auto kernel = decode_mlp_kernel<T>;
  a.xs_floats = std::max({a.q_width, a.hidden, a.ffn});
  const size_t smem = sizeof(float) * static_cast<size_t>(a.xs_floats + a.hidden);
  int dev = 0, optin = 0;
  HI_CUDA_CHECK(cudaGetDevice(&dev));
  HI_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  // The dynamic limit plus the kernel's static shared memory (the norm's sums) may not
  // pass the opt-in maximum: setting the limit to the maximum itself is an error.
  cudaFuncAttributes fa{};
  HI_CUDA_CHECK(cudaFuncGetAttributes(&fa, kernel));
  const size_t dyn_max = static_cast<size_t>(optin) - std::min(fa.sharedSizeBytes, static_cast<size_t>(optin));
  if (smem > dyn_max) return false;
  allow_dynamic_smem<kernel>(dyn_max);
  int per_sm = 0;
  HI_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, smem));
  if (per_sm < 1) return false;
  // At most what is resident at once (the barriers wait for every block), and by
  // default two blocks an SM: Llama-3-8B's 4096 output rows then take two rows a warp
  // on every warp (three blocks an SM would leave most warps one row and some two);
  // no more warps than the largest phase has rows.
  const int bps = std::min(per_sm, a.blocks_per_sm > 0 ? a.blocks_per_sm : 2);
  const int blocks = std::max(1, std::min(bps * sm_count, (std::max(a.ffn, a.hidden) + kWarps - 1) / kWarps));
  // L2 lines asked for ahead, per row of each phase: `prefetch_bytes` over the rows the
  // warps start on (a gate row and its up row in the gate/up phase), at most whole rows.
  const int64_t warps = int64_t{blocks} * kWarps;
  const auto lines = [&](int64_t starting_rows, int cols) {
    const int64_t row_lines = (int64_t{cols} * static_cast<int64_t>(sizeof(T)) + kLine - 1) / kLine;
    return static_cast<int>(std::min(row_lines, a.prefetch_bytes / (starting_rows * kLine)));
  };
  a.prefetch_lines[0] = lines(std::min<int64_t>(a.hidden, warps), a.q_width);
  a.prefetch_lines[1] = lines(2 * std::min<int64_t>(a.ffn, warps), a.hidden);
  a.prefetch_lines[2] = lines(std::min<int64_t>(a.hidden, warps), a.ffn);
  a.prefetch_lines[3] = a.wqkv ? lines(std::min<int64_t>(a.qkv_rows, warps), a.hidden) : 0;
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(static_cast<unsigned>(blocks));
  cfg.blockDim = dim3(kThreads);
  cfg.dynamicSmemBytes = smem;
  cfg.stream = s;
  cudaLaunchAttribute attr[2];
  unsigned n_attr = 0;
  if (pdl_enabled()) {
    attr[n_attr].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[n_attr++].val.programmaticStreamSerializationAllowed = 1;
  }
  if (a.cooperative) {
    attr[n_attr].id = cudaLaunchAttributeCooperative;
    attr[n_attr++].val.cooperative = 1;
  }
  cfg.attrs = attr;
  cfg.numAttrs = n_attr;
  HI_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, a));
  return true;
}

}  // namespace

bool launch_decode_mlp(const DecodeMlpArgs& a, int sm_count, cudaStream_t s) {
  const auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  if (a.wdt != DType::BF16 && a.wdt != DType::F16) return false;
  if (a.hidden <= 0 || a.ffn <= 0 || a.q_width <= 0 || a.hidden % 8 != 0 || a.ffn % 8 != 0 || a.q_width % 8 != 0)
    return false;
  if (a.hidden / 4 > 32 * 32) return false;  // the norm kernel's one-float4-a-thread shape only
  for (const void* p : {a.wo, a.w_gate_up, a.w_down, static_cast<const void*>(a.attn), static_cast<const void*>(a.x),
                        static_cast<const void*>(a.h), static_cast<const void*>(a.gu), static_cast<const void*>(a.tmp)})
    if (!aligned(p)) return false;
  if (a.sync == nullptr) return false;
  if (a.wqkv != nullptr && (a.qkv_rows <= 0 || !aligned(a.wqkv) || a.qkv == nullptr || a.next_norm_w == nullptr))
    return false;
  return a.wdt == DType::BF16 ? launch_typed<__nv_bfloat16>(a, sm_count, s) : launch_typed<__half>(a, sm_count, s);
}

}  // namespace headinfer::cuda
