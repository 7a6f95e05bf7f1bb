// Split-KV decode attention ("flash-decoding") for a few query rows: decode (one token,
// the n_qh heads of a KV group) and small chunks (n_q * n_qh <= kSimtRows rows).
// Memory-bound by design: every K/V byte of the block's key split is read once, with
// 16-byte loads straight into registers (no shared-memory staging, no barrier in the
// key loop), for all the block's query rows at once.
//
// Layout of a block (kDecodeWarps warps) over its keys:
//   * a key row of D elements is spread over LPK = D / kVec lanes (kVec elements =
//     16 bytes each); a warp covers KPI = 32 / LPK keys per load instruction and U
//     such loads per step (U * KPI keys); the next step's K and V loads are issued
//     before this step's math (registers double-buffered);
//   * warp w takes steps w, w + kDecodeWarps, ... of the split, so the block reads
//     contiguous runs of keys and every warp runs its own online softmax;
//   * each lane keeps its kVec dims of q (pre-scaled by scale * log2 e) and of the
//     running output for every row; a score is a partial dot product reduced over the
//     LPK lanes with xor shuffles, so all lanes of a key see the same score.
// At the end the key groups of a warp merge by shuffles, the warps through shared
// memory, and the block writes its normalised partial output and log-sum-exp.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdlib>

#include "backend/cuda/attention_common.cuh"
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/device_util.cuh"
#include "backend/cuda/kernels.hpp"

namespace headinfer::cuda {
namespace {

constexpr int kWarps = kDecodeWarps;
constexpr int kDefaultDecodePrefetch = 0;
constexpr int kThreads = kWarps * 32;

// The kVec elements of a 16-byte vector as floats.
__device__ __forceinline__ void unpack16(const uint4& raw, const __nv_bfloat16*, float (&f)[8]) {
  const uint32_t w[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    // bf16 -> f32 is a 16-bit shift: low half is element 2i, high half 2i + 1.
    f[2 * i] = __uint_as_float(w[i] << 16);
    f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
  }
}
__device__ __forceinline__ void unpack16(const uint4& raw, const __half*, float (&f)[8]) {
  const uint32_t w[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    __half2 h;
    memcpy(&h, &w[i], 4);
    const float2 v = __half22float2(h);
    f[2 * i] = v.x;
    f[2 * i + 1] = v.y;
  }
}
__device__ __forceinline__ void unpack16(const uint4& raw, const float*, float (&f)[4]) {
  f[0] = __uint_as_float(raw.x);
  f[1] = __uint_as_float(raw.y);
  f[2] = __uint_as_float(raw.z);
  f[3] = __uint_as_float(raw.w);
}

// Streaming 16-byte load: read once, keep it out of L1.
__device__ __forceinline__ uint4 load_stream(const void* p) {
  uint4 r;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
               : "l"(p));
  return r;
}

// kPrefetch: an instance that can prefetch (`prefetch` steps ahead); the default one
// is compiled without the branch, so its registers and speed stay as measured.
template <typename T, int D, int kRows, bool kPrefetch>
__global__ void __launch_bounds__(kThreads) attn_decode_kernel(const AttnParams p, int prefetch) {
  constexpr int kVec = 16 / sizeof(T);
  constexpr int LPK = D / kVec;  // lanes per key
  static_assert(LPK >= 2 && LPK <= 32 && (LPK & (LPK - 1)) == 0, "a key row spans 2..32 lanes");
  constexpr int KPI = 32 / LPK;                 // keys per warp and load instruction
  constexpr int U = kRows <= 2 ? 4 : kRows == 4 ? 2 : 1;  // load instructions per step (K and V each)
  constexpr int KW = KPI * U;                   // keys per warp step
  constexpr int KB = KW * kWarps;               // keys per block step
  __shared__ float red_o[kWarps][kRows][D];
  __shared__ float red_m[kWarps][kRows];
  __shared__ float red_l[kWarps][kRows];

  // Under programmatic dependent launch (the default on sm_90) this grid may start
  // while the previous kernel of the stream finishes: wait for it before touching
  // memory, and let the combine that follows get scheduled early. No-ops otherwise.
  pdl_wait();
  pdl_launch_dependents();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int sub = lane % LPK;  // which 16-byte slice of a key row
  const int kin = lane / LPK;  // which of the KPI keys
  const int r0 = blockIdx.x * kRows;
  const int nr = min(kRows, p.n_rows - r0);
  const int head = blockIdx.z;  // KV head of a multi-head launch (0 otherwise)
  const float* qbase = p.q + head * p.q_head_stride;
  const int slot = p.slot_base + blockIdx.y;
  const int64_t total = p.pieces.start[p.pieces.n];
  const int64_t kbeg = static_cast<int64_t>(blockIdx.y) * p.keys_per_split;
  const int64_t kend = min(total, kbeg + p.keys_per_split);

  float q[kRows][kVec];
  int64_t rpos[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const int rr = r0 + min(r, nr - 1);
    const int t = rr / p.n_qh, h = rr - t * p.n_qh;
    rpos[r] = p.q_pos0 + t;
    const float* qp = qbase + t * p.q_stride + static_cast<int64_t>(h) * D + sub * kVec;
#pragma unroll
    for (int e = 0; e < kVec; ++e) q[r][e] = r < nr ? qp[e] * p.scale_log2 : 0.f;
  }
  const int64_t qmax = p.q_pos0 + (r0 + nr - 1) / p.n_qh;  // position of the block's last row
  const int64_t qmin = p.q_pos0 + r0 / p.n_qh;             // ... and of its first

  float m[kRows], l[kRows], o[kRows][kVec];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    m[r] = -INFINITY;
    l[r] = 0.f;
#pragma unroll
    for (int e = 0; e < kVec; ++e) o[r][e] = 0.f;
  }

  for (int pc = 0; pc < p.pieces.n; ++pc) {
    const int64_t ps = p.pieces.start[pc];
    const int64_t a = max(ps, kbeg);
    int64_t b = min(p.pieces.start[pc + 1], kend);
    const int64_t pos_off = p.pieces.pos0[pc] - ps;  // position of global key j: j + pos_off
    if (p.causal) b = min(b, qmax - pos_off + 1);     // keys after every row: skipped
    if (a >= b) continue;
    const int64_t hoff = head * p.pieces.head_stride[pc];
    const T* kp = static_cast<const T*>(p.pieces.k[pc]) + hoff + sub * kVec;
    const T* vp = static_cast<const T*>(p.pieces.v[pc]) + hoff + sub * kVec;

    // Loads the step at k0 (keys past b read as zeros).
    auto load_step = [&](int64_t k0, uint4 (&kr)[U], uint4 (&vr)[U]) {
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int64_t key = k0 + u * KPI + kin;
        if (key < b) {
          kr[u] = load_stream(kp + (key - ps) * D);
          vr[u] = load_stream(vp + (key - ps) * D);
        } else {
          kr[u] = make_uint4(0, 0, 0, 0);
          vr[u] = make_uint4(0, 0, 0, 0);
        }
      }
    };
    uint4 kr[U], vr[U];
    load_step(a + warp * KW, kr, vr);
    for (int64_t k0 = a + warp * KW; k0 < b; k0 += KB) {
      // Lines `prefetch` steps ahead go to L2 (one lane per 128-byte line): more bytes in
      // flight than the registers hold, and no effect on the math.
      if (kPrefetch && sub % (128 / 16) == 0) {
#pragma unroll
        for (int u = 0; u < U; ++u) {
          const int64_t key = k0 + prefetch * KB + u * KPI + kin;
          if (key < b) {
            prefetch_l2(kp + (key - ps) * D);
            prefetch_l2(vp + (key - ps) * D);
          }
        }
      }
      // The next step's loads go out before this step's math (register double buffer).
      uint4 kn[U], vn[U];
      load_step(k0 + KB, kn, vn);
      float s[U][kRows];
#pragma unroll
      for (int u = 0; u < U; ++u) {
        float kf[kVec];
        unpack16(kr[u], static_cast<const T*>(nullptr), kf);
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
          float acc = 0.f;
#pragma unroll
          for (int e = 0; e < kVec; ++e) acc = fmaf(q[r][e], kf[e], acc);
          s[u][r] = acc;
        }
      }
#pragma unroll
      for (int off = LPK / 2; off > 0; off >>= 1)
#pragma unroll
        for (int u = 0; u < U; ++u)
#pragma unroll
          for (int r = 0; r < kRows; ++r) s[u][r] += __shfl_xor_sync(0xffffffffu, s[u][r], off);

      // Masks only where a key may be missing or after a row (warp-uniform test).
      if (k0 + KW > b || (p.causal && k0 + KW - 1 + pos_off > qmin)) {
#pragma unroll
        for (int u = 0; u < U; ++u) {
          const int64_t key = k0 + u * KPI + kin;
#pragma unroll
          for (int r = 0; r < kRows; ++r)
            if (key >= b || (p.causal && key + pos_off > rpos[r])) s[u][r] = -INFINITY;
        }
      }

#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        float mx = s[0][r];
#pragma unroll
        for (int u = 1; u < U; ++u) mx = fmaxf(mx, s[u][r]);
        if (mx > m[r]) {  // the running max grew (rare after the first steps): rescale
          const float alpha = exp2f(m[r] - mx);  // 0 when nothing was visible before
          l[r] *= alpha;
#pragma unroll
          for (int e = 0; e < kVec; ++e) o[r][e] *= alpha;
          m[r] = mx;
        }
        const float mu = m[r] == -INFINITY ? 0.f : m[r];  // nothing visible yet: keep exp2 finite
#pragma unroll
        for (int u = 0; u < U; ++u) s[u][r] = exp2f(s[u][r] - mu);
      }
#pragma unroll
      for (int u = 0; u < U; ++u) {
        float vf[kVec];
        unpack16(vr[u], static_cast<const T*>(nullptr), vf);
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
          l[r] += s[u][r];
#pragma unroll
          for (int e = 0; e < kVec; ++e) o[r][e] = fmaf(s[u][r], vf[e], o[r][e]);
        }
      }
#pragma unroll
      for (int u = 0; u < U; ++u) {
        kr[u] = kn[u];
        vr[u] = vn[u];
      }
    }
  }

  // Merge the KPI key groups of the warp (lanes sub, sub + LPK, ... hold the same dims).
#pragma unroll
  for (int off = LPK; off < 32; off <<= 1) {
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const float m2 = __shfl_xor_sync(0xffffffffu, m[r], off);
      const float l2 = __shfl_xor_sync(0xffffffffu, l[r], off);
      const float mn = fmaxf(m[r], m2);
      const float mu = mn == -INFINITY ? 0.f : mn;
      const float wa = exp2f(m[r] - mu), wb = exp2f(m2 - mu);
      l[r] = l[r] * wa + l2 * wb;
      m[r] = mn;
#pragma unroll
      for (int e = 0; e < kVec; ++e) {
        const float o2 = __shfl_xor_sync(0xffffffffu, o[r][e], off);
        o[r][e] = o[r][e] * wa + o2 * wb;
      }
    }
  }
  if (kin == 0) {
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
#pragma unroll
      for (int e = 0; e < kVec; ++e) red_o[warp][r][sub * kVec + e] = o[r][e];
      if (sub == 0) {
        red_m[warp][r] = m[r];
        red_l[warp][r] = l[r];
      }
    }
  }
  __syncthreads();

  constexpr float kLn2 = 0.69314718055994531f;
  for (int i = threadIdx.x; i < kRows * D; i += kThreads) {
    const int r = i / D, d = i - r * D;
    if (r >= nr) break;
    float mx = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, red_m[w][r]);
    const float mu = mx == -INFINITY ? 0.f : mx;
    float lsum = 0.f, acc = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const float wt = exp2f(red_m[w][r] - mu);
      lsum = fmaf(red_l[w][r], wt, lsum);
      acc = fmaf(red_o[w][r][d], wt, acc);
    }
    const bool any = lsum > 0.f;
    (attn_out_row(p, slot, r0 + r) + head * p.q_head_stride)[d] = any ? acc / lsum : 0.f;
    if (d == 0) {
      float* lp = attn_lse_at(p, slot, r0 + r);
      if (lp) lp[head * p.lse_head_stride] = any ? (mx + log2f(lsum)) * kLn2 : -INFINITY;
    }
  }
}

// Block steps the decode kernel prefetches ahead into L2: HEADINFER_CUDA_DECODE_PREFETCH
// (read once per process, for benchmarks; the bits are the same at any distance).
int decode_prefetch_steps() {
  static const int steps = [] {
    const char* e = std::getenv("HEADINFER_CUDA_DECODE_PREFETCH");
    if (!e) return kDefaultDecodePrefetch;
    const int v = std::atoi(e);
    return v < 0 ? 0 : v > 16 ? 16 : v;
  }();
  return steps;
}

template <typename T, int D>
void launch_decode_dim(const AttnParams& p, int n_splits, cudaStream_t s) {
  const int rows = attention_decode_rows(p.n_rows);
  const int pf = decode_prefetch_steps();
  dim3 grid((p.n_rows + rows - 1) / rows, n_splits, p.n_heads > 1 ? p.n_heads : 1);
  if (pf > 0) {
    switch (rows) {
      case 1: launch_maybe_pdl(attn_decode_kernel<T, D, 1, true>, grid, dim3(kThreads), 0, s, p, pf); break;
      case 2: launch_maybe_pdl(attn_decode_kernel<T, D, 2, true>, grid, dim3(kThreads), 0, s, p, pf); break;
      case 4: launch_maybe_pdl(attn_decode_kernel<T, D, 4, true>, grid, dim3(kThreads), 0, s, p, pf); break;
      default: launch_maybe_pdl(attn_decode_kernel<T, D, 8, true>, grid, dim3(kThreads), 0, s, p, pf); break;
    }
  } else {
    switch (rows) {
      case 1: launch_maybe_pdl(attn_decode_kernel<T, D, 1, false>, grid, dim3(kThreads), 0, s, p, 0); break;
      case 2: launch_maybe_pdl(attn_decode_kernel<T, D, 2, false>, grid, dim3(kThreads), 0, s, p, 0); break;
      case 4: launch_maybe_pdl(attn_decode_kernel<T, D, 4, false>, grid, dim3(kThreads), 0, s, p, 0); break;
      default: launch_maybe_pdl(attn_decode_kernel<T, D, 8, false>, grid, dim3(kThreads), 0, s, p, 0); break;
    }
  }
  HI_CUDA_CHECK_LAUNCH("attn_decode_kernel");
}

template <typename T, int D>
int occupancy_dim(int rows) {
  int n = 0;
  switch (rows) {
    case 1: HI_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, attn_decode_kernel<T, D, 1, false>, kThreads, 0)); break;
    case 2: HI_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, attn_decode_kernel<T, D, 2, false>, kThreads, 0)); break;
    case 4: HI_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, attn_decode_kernel<T, D, 4, false>, kThreads, 0)); break;
    default: HI_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, attn_decode_kernel<T, D, 8, false>, kThreads, 0)); break;
  }
  return n;
}

template <typename T>
int occupancy_typed(int head_dim, int rows) {
  return head_dim == 64 ? occupancy_dim<T, 64>(rows) : occupancy_dim<T, 128>(rows);
}

template <typename T>
void launch_decode_typed(const AttnParams& p, int n_splits, cudaStream_t s) {
  if (p.head_dim == 64)
    launch_decode_dim<T, 64>(p, n_splits, s);
  else
    launch_decode_dim<T, 128>(p, n_splits, s);
}

}  // namespace

bool attention_decode_supported(DType kv, int head_dim) {
  return (kv == DType::BF16 || kv == DType::F16 || kv == DType::F32) && (head_dim == 64 || head_dim == 128);
}

int attention_decode_rows(int n_rows) {
  // Row groups of at most 8 (registers); the fewest rows per block that cover them.
  const int groups = (n_rows + 7) / 8;
  const int per = (n_rows + groups - 1) / groups;
  return per <= 1 ? 1 : per <= 2 ? 2 : per <= 4 ? 4 : 8;
}

int attention_decode_blocks_per_sm(DType kv, int head_dim, int n_rows) {
  if (!attention_decode_supported(kv, head_dim)) return 1;
  const int rows = attention_decode_rows(n_rows);
  int n = 1;
  switch (kv) {
    case DType::BF16: n = occupancy_typed<__nv_bfloat16>(head_dim, rows); break;
    case DType::F16: n = occupancy_typed<__half>(head_dim, rows); break;
    default: n = occupancy_typed<float>(head_dim, rows); break;
  }
  return n < 1 ? 1 : n;
}

void launch_attention_decode(const AttnParams& p, int n_splits, DType kv, cudaStream_t s) {
  if (p.n_rows <= 0) return;
  HI_CHECK(p.n_heads <= 65535, "cuda attention: " << p.n_heads << " KV heads in one launch exceed the grid");
  HI_CHECK(attention_decode_supported(kv, p.head_dim),
           "cuda attention: no decode kernel for KV " << dtype_name(kv) << " with head_dim " << p.head_dim);
  switch (kv) {
    case DType::BF16: launch_decode_typed<__nv_bfloat16>(p, n_splits, s); break;
    case DType::F16: launch_decode_typed<__half>(p, n_splits, s); break;
    default: launch_decode_typed<float>(p, n_splits, s); break;
  }
}

}  // namespace headinfer::cuda
