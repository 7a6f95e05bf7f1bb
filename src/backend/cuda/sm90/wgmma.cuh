// Hopper's warpgroup MMA (wgmma.mma_async, sm_90a only) for the flash-attention
// kernel: shared-memory descriptors of the no-swizzle ("interleaved") layout, and the
// two shapes the kernel needs, m64n64k16 and m64n128k16, with A in registers.
//
// Layout facts these rely on (PTX ISA, "asynchronous warpgroup level matrix shared
// memory layout"):
//   * an operand in shared memory is made of core matrices of 8 rows x 16 bytes, each
//     stored as 128 contiguous bytes;
//   * the descriptor holds the start address, the leading-dimension byte offset (LBO:
//     between core matrices adjacent in K) and the stride-dimension byte offset (SBO:
//     between core matrices adjacent in M or N), each >> 4;
//   * A in registers has, per warp of the warpgroup (rows 16w..16w+15), the fragment
//     layout of mma.sync m16n8k16's A; the f32 accumulator of m64nNk16 has, per warp,
//     N/8 groups of mma.sync's C layout: d[j][0..3] = (g, 8j+2q), (g, 8j+2q+1),
//     (g+8, 8j+2q), (g+8, 8j+2q+1) with g = lane / 4, q = lane % 4.
#pragma once

#include <cstdint>

namespace headinfer::cuda::wgmma {

__device__ __forceinline__ uint64_t desc(const void* smem, uint32_t lbo_bytes, uint32_t sbo_bytes) {
  const uint32_t addr = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  uint64_t d = 0;
  d |= static_cast<uint64_t>((addr >> 4) & 0x3FFF);
  d |= static_cast<uint64_t>((lbo_bytes >> 4) & 0x3FFF) << 16;
  d |= static_cast<uint64_t>((sbo_bytes >> 4) & 0x3FFF) << 32;
  // base offset 0, swizzle mode 0 (none)
  return d;
}

__device__ __forceinline__ void fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Shared memory written through the generic proxy (st.shared, cp.async) becomes
// visible to wgmma's async proxy only after this fence (then a barrier).
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

// Keeps the compiler from moving accesses of accumulator registers across the
// asynchronous MMA's issue and wait.
template <int J>
__device__ __forceinline__ void pin(float (&d)[J][4]) {
#pragma unroll
  for (int j = 0; j < J; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) asm volatile("" : "+f"(d[j][e])::"memory");
}

// dst = src ^ zero, zero being 0 computed at run time from a kernel argument and a
// loop-variant value (so neither compiler can fold the copy or hoist it out of the loop:
// a plain move was coalesced away, a loop-invariant XOR hoisted). ptxas (CUDA 13.0) may treat the
// registers an A-from-registers wgmma reads as free once it has issued: an A fragment
// kept across loop iterations (Q) then had its registers handed to the softmax's
// temporaries and to P, and the next tile's S = Q K^T read P as Q (seen in the SASS of
// the head_dim 64 kernels, whose tests failed). The copy gives each tile's MMAs registers
// of their own, and the kept fragment is read by ordinary instructions, whose liveness
// ptxas tracks.
template <int K>
__device__ __forceinline__ void fresh_copy(const uint32_t (&src)[K][4], uint32_t zero, uint32_t (&dst)[K][4]) {
#pragma unroll
  for (int k = 0; k < K; ++k)
#pragma unroll
    for (int e = 0; e < 4; ++e) dst[k][e] = src[k][e] ^ zero;
}

#define HI_WGMMA_ACC(i) "+f"(d[i][0]), "+f"(d[i][1]), "+f"(d[i][2]), "+f"(d[i][3])
#define HI_WGMMA_ACC_64                                                                                        \
  HI_WGMMA_ACC(0), HI_WGMMA_ACC(1), HI_WGMMA_ACC(2), HI_WGMMA_ACC(3), HI_WGMMA_ACC(4), HI_WGMMA_ACC(5), \
      HI_WGMMA_ACC(6), HI_WGMMA_ACC(7)
#define HI_WGMMA_ACC_128                                                                                       \
  HI_WGMMA_ACC_64, HI_WGMMA_ACC(8), HI_WGMMA_ACC(9), HI_WGMMA_ACC(10), HI_WGMMA_ACC(11), HI_WGMMA_ACC(12), \
      HI_WGMMA_ACC(13), HI_WGMMA_ACC(14), HI_WGMMA_ACC(15)
#define HI_WGMMA_REGS_64                                                                                      \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, " \
  "%23, %24, %25, %26, %27, %28, %29, %30, %31}, {%32, %33, %34, %35}, %36, p, 1, 1, "
#define HI_WGMMA_REGS_128                                                                                     \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, " \
  "%23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, "  \
  "%44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "      \
  "{%64, %65, %66, %67}, %68, p, 1, 1, "

// D (64 x N, f32) (+)= A (64 x 16, registers) * B (16 x N, shared memory, descriptor
// b); kTransB 1: B stored MN-major (N contiguous) instead of K-major; scale_d 0: D's
// old value is ignored. kBf16 picks BF16 or F16 inputs.
template <int N, bool kBf16, int kTransB>
struct Mma;

// One specialisation per shape and input type; SCALE and TRANS are the operand numbers
// of scale_d and kTransB, after the accumulators, the four A registers and b.
#define HI_WGMMA_MMA(N, BF16, TYPE, REGS, ACC, SCALE, TRANS)                                                  \
  template <int kTransB>                                                                                       \
  struct Mma<N, BF16, kTransB> {                                                                               \
    static __device__ __forceinline__ void run(float (&d)[N / 8][4], const uint32_t (&a)[4], uint64_t b,       \
                                               int scale_d) {                                                  \
      asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %" SCALE ", 0;\n"                                         \
                   "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." TYPE "." TYPE " " REGS "%" TRANS ";\n}\n" \
                   : ACC                                                                                       \
                   : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(scale_d), "n"(kTransB));         \
    }                                                                                                          \
  };
HI_WGMMA_MMA(64, true, "bf16", HI_WGMMA_REGS_64, HI_WGMMA_ACC_64, "37", "38")
HI_WGMMA_MMA(64, false, "f16", HI_WGMMA_REGS_64, HI_WGMMA_ACC_64, "37", "38")
HI_WGMMA_MMA(128, true, "bf16", HI_WGMMA_REGS_128, HI_WGMMA_ACC_128, "69", "70")
HI_WGMMA_MMA(128, false, "f16", HI_WGMMA_REGS_128, HI_WGMMA_ACC_128, "69", "70")

#undef HI_WGMMA_MMA
#undef HI_WGMMA_ACC
#undef HI_WGMMA_ACC_64
#undef HI_WGMMA_ACC_128
#undef HI_WGMMA_REGS_64
#undef HI_WGMMA_REGS_128

}  // namespace headinfer::cuda::wgmma
