// Flash attention on Hopper's warpgroup MMA (sm_90a), with the contract of
// attn_mma_kernel (attention_prefill.cu): same rows, masks, tile walk, rounding points
// (Q and P rounded to the KV dtype; S, the softmax and O in f32) and epilogue.
//   * a block is kGroups warpgroups of 64 query rows; Q stays in registers as wgmma's
//     A operand, so S = Q K^T is 64 x 64 per warpgroup and tile (m64n64k16), and
//     O += P V is 64 x D (m64nDk16) with P re-packed from S's accumulators;
//   * K and V tiles of 64 keys live in shared memory in two stages: the next tile's
//     cp.async copies run while this tile's MMAs and softmax do, with one barrier a tile;
//   * both tiles use one layout, core matrices of 8 keys x 8 values (128 bytes)
//     at (key / 8) * kRowGroup + (value / 8) * 128: for S it is K-major B (LBO 128
//     between value groups, SBO kRowGroup between key groups), for P V the same bytes
//     are MN-major B (LBO kRowGroup between key groups, SBO 128 between value groups).
// Built for sm_90a only; the host checks the device before it picks this kernel.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdlib>
#include <type_traits>

#include "backend/cuda/attention_common.cuh"
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/device_util.cuh"
#include "backend/cuda/kernels.hpp"
#include "backend/cuda/mma_util.cuh"
#include "backend/cuda/sm90/wgmma.cuh"

namespace headinfer::cuda {
namespace {

using mma::BN;
using mma::cp_async_16;
using mma::cp_async_commit;
using mma::cp_async_wait;
using mma::MmaOps;

template <int D>
constexpr int tile_bytes() {
  return BN * D * 2;
}
template <int D>
constexpr size_t smem_bytes() {
  return static_cast<size_t>(4) * tile_bytes<D>();  // K and V, two stages each
}

// Copies `count` keys (the rest zero) of a [keys][D] tile into the core-matrix layout.
// Eight consecutive threads fill one 128-byte core matrix.
template <int D, int kThreads>
__device__ __forceinline__ void load_tile(uint8_t* dst, const uint16_t* src, int count) {
  constexpr int kRowGroup = D * 16;  // bytes of 8 keys x D values
  constexpr int kChunks = D / 8;     // 16-byte chunks per key
  for (int c = threadIdx.x; c < BN * kChunks; c += kThreads) {
    const int key = (c & 7) + 8 * (c / (8 * kChunks));
    const int chunk = (c >> 3) % kChunks;
    const bool in = key < count;
    const uint16_t* g = in ? src + static_cast<int64_t>(key) * D + chunk * 8 : src;
    cp_async_16(dst + (key >> 3) * kRowGroup + chunk * 128 + (key & 7) * 16, g, in ? 16 : 0);
  }
}

template <typename T, int D, int kGroups>
__global__ void __launch_bounds__(kGroups * 128, kGroups == 1 ? 3 : 1) attn_wgmma_kernel(const AttnParams p,
                                                                                      int desc_swap, uint32_t zero) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using Ops = MmaOps<T>;
  constexpr bool kBf16 = std::is_same_v<T, __nv_bfloat16>;
  constexpr int kThreads = kGroups * 128, BM = 64 * kGroups;
  constexpr int kRowGroup = D * 16;
  extern __shared__ __align__(128) uint8_t smem[];
  // stage s: K at smem + s * 2 * tile, V right after it

  const mma::BlockRows br(p, BM);
  const int tq = br.tq, slot = br.slot, ra = br.ra, rb = br.rb;
  const int64_t kbeg = br.kbeg, kend = br.kend, pos_a = br.pos_a, pos_b = br.pos_b, qmin = br.qmin, qmax = br.qmax;

  uint32_t qf[D / 16][4];
  mma::load_q<T, D>(p, ra, rb, tq, qf);

  float oacc[D / 8][4];
#pragma unroll
  for (int i = 0; i < D / 8; ++i) oacc[i][0] = oacc[i][1] = oacc[i][2] = oacc[i][3] = 0.f;
  float m_a = -INFINITY, m_b = -INFINITY, l_a = 0.f, l_b = 0.f;

  // Descriptor strides (desc_swap exchanges LBO and SBO per operand: a layout probe
  // for tests, 0 in production).
  const uint32_t k_lbo = (desc_swap & 1) ? kRowGroup : 128, k_sbo = (desc_swap & 1) ? 128 : kRowGroup;
  const uint32_t v_lbo = (desc_swap & 2) ? 128 : kRowGroup, v_sbo = (desc_swap & 2) ? kRowGroup : 128;

  auto load = [&](int stage, const KeyTile& t) {
    uint8_t* ks = smem + stage * 2 * tile_bytes<D>();
    load_tile<D, kThreads>(ks, static_cast<const uint16_t*>(p.pieces.k[t.piece]) + t.local * D, t.count);
    load_tile<D, kThreads>(ks + tile_bytes<D>(), static_cast<const uint16_t*>(p.pieces.v[t.piece]) + t.local * D,
                           t.count);
    cp_async_commit();
  };

  TileWalker<BN> walker(p, kbeg, kend, qmax);
  KeyTile cur, nxt;
  bool has = walker.advance(cur);
  if (has) load(0, cur);
  int stage = 0;
  while (has) {
    cp_async_wait<0>();
    wgmma::fence_proxy_async();
    __syncthreads();  // this tile landed for all; every warp is done with the other stage
    const bool has_next = walker.advance(nxt);
    if (has_next) load(stage ^ 1, nxt);
    const uint8_t* ks = smem + stage * 2 * tile_bytes<D>();
    const uint8_t* vs = ks + tile_bytes<D>();

    float sacc[BN / 8][4];
#pragma unroll
    for (int j = 0; j < BN / 8; ++j) sacc[j][0] = sacc[j][1] = sacc[j][2] = sacc[j][3] = 0.f;
    uint32_t qa[D / 16][4];
    wgmma::fresh_copy(qf, zero & static_cast<uint32_t>(cur.pos), qa);  // a zero that varies by tile
    wgmma::pin(sacc);
    wgmma::fence();
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk)
      wgmma::Mma<64, kBf16, 0>::run(sacc, qa[kk], wgmma::desc(ks + kk * 256, k_lbo, k_sbo), kk > 0);
    wgmma::commit();
    wgmma::wait<0>();
    wgmma::pin(sacc);

    const bool unmasked = cur.count == BN && (!p.causal || cur.pos + BN - 1 <= qmin);
    mma::softmax_step<D, BN / 8, int64_t, /*kScaleInExp=*/false>(sacc, oacc, m_a, m_b, l_a, l_b, p.scale_log2,
                                                                 unmasked, cur.count, p.causal != 0, cur.pos, pos_a,
                                                                 pos_b, tq);

    uint32_t pa[BN / 16][4];
#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk) {
      pa[kk][0] = Ops::pack(sacc[2 * kk][0], sacc[2 * kk][1]);
      pa[kk][1] = Ops::pack(sacc[2 * kk][2], sacc[2 * kk][3]);
      pa[kk][2] = Ops::pack(sacc[2 * kk + 1][0], sacc[2 * kk + 1][1]);
      pa[kk][3] = Ops::pack(sacc[2 * kk + 1][2], sacc[2 * kk + 1][3]);
    }
    wgmma::pin(oacc);
    wgmma::fence();
#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk)
      wgmma::Mma<D, kBf16, 1>::run(oacc, pa[kk], wgmma::desc(vs + kk * 2 * kRowGroup, v_lbo, v_sbo), 1);
    wgmma::commit();
    wgmma::wait<0>();
    wgmma::pin(oacc);

    cur = nxt;
    has = has_next;
    stage ^= 1;
  }

  mma::store_rows<D>(p, slot, ra, oacc, m_a, m_b, l_a, l_b, tq);
#else
  __trap();  // compiled for a device without wgmma; the host never launches this
#endif
}

int desc_swap_from_env() {
  const char* e = std::getenv("HEADINFER_CUDA_WGMMA_DESC_SWAP");
  return e ? std::atoi(e) & 3 : 0;
}

template <typename T, int D, int kGroups>
void launch_typed(const AttnParams& p, int n_splits, cudaStream_t s) {
  static const int swap = desc_swap_from_env();
  allow_dynamic_smem<attn_wgmma_kernel<T, D, kGroups>>(smem_bytes<D>());
  dim3 grid((p.n_rows + 64 * kGroups - 1) / (64 * kGroups), n_splits);
  // The last argument is the zero wgmma::fresh_copy needs from outside the compiler's sight.
  attn_wgmma_kernel<T, D, kGroups><<<grid, kGroups * 128, smem_bytes<D>(), s>>>(p, swap, 0u);
  HI_CUDA_CHECK_LAUNCH("attn_wgmma_kernel");
}

template <typename T, int D, int kGroups>
int blocks_per_sm_typed() {
  allow_dynamic_smem<attn_wgmma_kernel<T, D, kGroups>>(smem_bytes<D>());
  int n = 0;
  HI_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, attn_wgmma_kernel<T, D, kGroups>, kGroups * 128,
                                                              smem_bytes<D>()));
  return n < 1 ? 1 : n;
}

template <int G>
int blocks_per_sm_groups(DType kv, int head_dim) {
  if (kv == DType::BF16)
    return head_dim == 64 ? blocks_per_sm_typed<__nv_bfloat16, 64, G>() : blocks_per_sm_typed<__nv_bfloat16, 128, G>();
  return head_dim == 64 ? blocks_per_sm_typed<__half, 64, G>() : blocks_per_sm_typed<__half, 128, G>();
}

template <int G>
void launch_groups(const AttnParams& p, int n_splits, DType kv, cudaStream_t s) {
  if (kv == DType::BF16)
    p.head_dim == 64 ? launch_typed<__nv_bfloat16, 64, G>(p, n_splits, s)
                     : launch_typed<__nv_bfloat16, 128, G>(p, n_splits, s);
  else
    p.head_dim == 64 ? launch_typed<__half, 64, G>(p, n_splits, s) : launch_typed<__half, 128, G>(p, n_splits, s);
}

}  // namespace

bool attention_wgmma_available() {
  int dev = 0, major = 0, minor = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return false;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) return false;
  if (cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess) return false;
  return major == 9 && minor == 0;  // sm_90a code runs on compute capability 9.0 only
}

int attention_wgmma_rows(int groups) { return 64 * groups; }

int attention_wgmma_blocks_per_sm(DType kv, int head_dim, int groups) {
  if (!attention_mma_supported(kv, head_dim)) return 1;
  return groups == 2 ? blocks_per_sm_groups<2>(kv, head_dim) : blocks_per_sm_groups<1>(kv, head_dim);
}

void launch_attention_wgmma(const AttnParams& p, int n_splits, DType kv, int groups, cudaStream_t s) {
  if (p.n_rows <= 0) return;
  HI_CHECK(attention_mma_supported(kv, p.head_dim),
           "cuda attention: no warpgroup kernel for KV " << dtype_name(kv) << " with head_dim " << p.head_dim);
  HI_CHECK(attention_wgmma_available(), "cuda attention: the warpgroup (wgmma) kernel needs compute capability 9.0");
  if (groups == 2)
    launch_groups<2>(p, n_splits, kv, s);
  else
    launch_groups<1>(p, n_splits, kv, s);
}

}  // namespace headinfer::cuda
