// Device helpers shared by the kernels: dtype-generic loads, warp reductions,
// launch-size helpers.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <utility>

#include "backend/cuda/cuda_check.hpp"
#include "format/tensor.hpp"

namespace headinfer::cuda {

// Element i of a F32 / F16 / BF16 array as float.
__device__ __forceinline__ float load_as_f32(const void* p, DType dt, int64_t i) {
  switch (dt) {
    case DType::F16: return __half2float(static_cast<const __half*>(p)[i]);
    case DType::BF16: return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
    default: return static_cast<const float*>(p)[i];
  }
}

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }

// f32 -> a KV / activation dtype, round to nearest even.
template <typename T>
__device__ __forceinline__ T from_f32(float v);
template <>
__device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_f32<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// N consecutive values of T moved in one access (the address aligned to N * sizeof(T)),
// widened to or rounded from f32.
template <typename T, int N>
struct alignas(sizeof(T) * N) Pack {
  T v[N];
};
template <int N, typename T>
__device__ __forceinline__ void load_f32(const T* p, float (&out)[N]) {
  const Pack<T, N> pk = *reinterpret_cast<const Pack<T, N>*>(p);
#pragma unroll
  for (int i = 0; i < N; ++i) out[i] = to_f32(pk.v[i]);
}
template <int N, typename T>
__device__ __forceinline__ void store_f32(T* p, const float (&in)[N]) {
  Pack<T, N> pk;
#pragma unroll
  for (int i = 0; i < N; ++i) pk.v[i] = from_f32<T>(in[i]);
  *reinterpret_cast<Pack<T, N>*>(p) = pk;
}

// The SwiGLU of one gate and up value, in f32 whatever they are stored in (every kernel
// that computes one: the same bits).
__device__ __forceinline__ float swiglu_value(float g, float u) { return g / (1.0f + expf(-g)) * u; }

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Programmatic dependent launch (sm_90+; no-ops elsewhere and when the grid was
// launched without the attribute): wait for the preceding grid of the stream to
// complete and its writes to be visible / allow the next grid to be scheduled.
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

// A hint to bring the 128-byte line holding p into L2 (no register, no fault).
__device__ __forceinline__ void prefetch_l2(const void* p) {
  asm volatile("prefetch.global.L2 [%0];\n" ::"l"(p));
}

// Whether kernels that call pdl_wait() first are launched with programmatic stream
// serialization: on compute capability 9.0+ unless HEADINFER_CUDA_PDL=0 (read at every
// launch, so tests can compare both). The kernels of a decode step take it (GEMV, norms,
// RoPE, KV store, attention, combine, SwiGLU, add), the GEMV, the norms and RoPE doing
// their independent work (W prefetch, weights, angles) before the wait. Measured on the
// H200: 4K decode 6.04 -> 5.77 ms/token, 128K 11.68 -> 11.49, with the same bits.
inline bool pdl_enabled() {
  static signed char cached[64] = {};
  const char* e = std::getenv("HEADINFER_CUDA_PDL");
  if (e && e[0] == '0') return false;
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) return false;
  if (cached[dev] == 0) {
    int major = 0;
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
    cached[dev] = major >= 9 ? 1 : -1;
  }
  return cached[dev] > 0;
}

// Launches kernel<<<grid, block, smem, s>>>(args...), with programmatic stream
// serialization where pdl_enabled(). The kernel must call pdl_wait() before it touches
// memory the previous kernel may write, and before pdl_launch_dependents(): then, as
// every kernel here does so, whatever was written before the previous kernel is
// complete when this one starts (read-only weights, settled KV rows). Launch errors
// are left for the caller's check.
template <typename... KArgs, typename... Args>
void launch_maybe_pdl(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t s,
                      Args&&... args) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = s;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = pdl_enabled() ? 1 : 0;
  cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}

// Raises Kernel's dynamic shared-memory limit (48 KiB by default) to bytes: once per
// kernel and device, as the attribute is per device. Call it before each launch or
// occupancy query with the kernel's largest size.
template <auto Kernel>
void allow_dynamic_smem(size_t bytes) {
  static bool done[64] = {};
  int dev = 0;
  HI_CUDA_CHECK(cudaGetDevice(&dev));
  const bool known = dev >= 0 && dev < 64;
  if (known && done[dev]) return;
  HI_CUDA_CHECK(cudaFuncSetAttribute(Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
  if (known) done[dev] = true;
}

// Whether p is a multiple of `bytes` (a vector load's size).
inline bool aligned_to(const void* p, uintptr_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

// Whether rows of `cols` elements, each start `strides` elements after the last, split
// into whole vectors of `vec` elements from every pointer given: cols and every stride
// multiples of vec, every pointer aligned to `bytes`.
inline bool vector_rows(int vec, int64_t cols, std::initializer_list<int64_t> strides,
                        std::initializer_list<const void*> ptrs, uintptr_t bytes) {
  if (cols % vec != 0) return false;
  for (int64_t st : strides)
    if (st % vec != 0) return false;
  for (const void* p : ptrs)
    if (!aligned_to(p, bytes)) return false;
  return true;
}

// Grid size for a grid-stride loop over n items.
inline unsigned grid_for(int64_t n, int block, int64_t cap = 65535LL * 16) {
  int64_t g = (n + block - 1) / block;
  if (g < 1) g = 1;
  if (g > cap) g = cap;
  return static_cast<unsigned>(g);
}

}  // namespace headinfer::cuda
