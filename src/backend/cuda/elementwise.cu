// Elementwise ops: SwiGLU, residual add, f32 -> KV dtype conversion (store_kv),
// f32 -> F16/BF16 activation conversion and the bias fill used by matmul.
#include <algorithm>
#include <cstdint>
#include <initializer_list>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/device_util.cuh"
#include "backend/cuda/kernels.hpp"

namespace headinfer::cuda {
namespace {

// out may alias gate (same T): every element is read before it is written, by one thread.
template <typename T>
__global__ void swiglu_kernel(const T* gate, const T* __restrict__ up, int rows, int64_t cols, int64_t in_stride,
                              T* out, int64_t out_stride) {
  pdl_wait();
  pdl_launch_dependents();
  const int64_t n = static_cast<int64_t>(rows) * cols;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / cols, c = i - r * cols;
    out[r * out_stride + c] = from_f32<T>(swiglu_value(to_f32(gate[r * in_stride + c]), to_f32(up[r * in_stride + c])));
  }
}

__global__ void add_kernel(float* x, const float* y, int64_t n) {
  pdl_wait();
  pdl_launch_dependents();
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    x[i] += y[i];
}

template <typename T>
__global__ void store_kv_kernel(const float* __restrict__ src, int64_t src_stride, int n, int head_dim,
                                T* __restrict__ dst) {
  int64_t total = static_cast<int64_t>(n) * head_dim;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t row = i / head_dim, col = i % head_dim;
    dst[i] = from_f32<T>(src[row * src_stride + col]);
  }
}

// blockIdx.y = 2 * head + (0: K, 1: V); the x dimension strides over the head's rows.
template <typename T>
__global__ void store_kv_heads_kernel(const float* __restrict__ k, const float* __restrict__ v, int64_t src_stride,
                                      int n, int head_dim, KvHeadDsts dst) {
  pdl_wait();
  pdl_launch_dependents();
  const int head = blockIdx.y >> 1, side = blockIdx.y & 1;
  const float* src = (side ? v : k) + static_cast<int64_t>(head) * head_dim;
  T* out = static_cast<T*>(side ? dst.v[head] : dst.k[head]);
  const int64_t total = static_cast<int64_t>(n) * head_dim;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = i / head_dim, col = i % head_dim;
    out[i] = from_f32<T>(src[row * src_stride + col]);
  }
}

template <typename T>
__global__ void convert_kernel(const float* __restrict__ x, int64_t n, T* __restrict__ dst) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    dst[i] = from_f32<T>(x[i]);
}

template <typename T>
__global__ void convert_rows_kernel(const float* __restrict__ x, int rows, int64_t cols, int64_t x_stride,
                                    T* __restrict__ dst) {
  const int64_t n = static_cast<int64_t>(rows) * cols;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / cols, c = i - r * cols;
    dst[i] = from_f32<T>(x[r * x_stride + c]);
  }
}

// Prefill-sized rows, four columns a thread: blockIdx.y strides over groups of kVecRows
// rows, so no 64-bit division per element (the scalar kernels above are bound by it,
// not by memory), and a thread's loads of all its rows are issued before any is used
// (one row's 16 bytes a thread kept too little in flight for the memory's rate).
// Callers check vec4_rows_ok: columns and strides multiples of 4, 16-byte aligned rows
// (4-element aligned for the SwiGLU over BF16 / F16 rows).
constexpr int kVecRows = 4;
template <typename T>
__global__ void convert_rows_vec4_kernel(const float* __restrict__ x, int rows, int64_t cols, int64_t x_stride,
                                         T* __restrict__ dst, int64_t dst_stride) {
  const int64_t c = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) * 4;
  if (c >= cols) return;
  for (int r0 = blockIdx.y * kVecRows; r0 < rows; r0 += gridDim.y * kVecRows) {
    float v[kVecRows][4];
#pragma unroll
    for (int i = 0; i < kVecRows; ++i)
      if (r0 + i < rows) load_f32(x + (r0 + i) * x_stride + c, v[i]);
#pragma unroll
    for (int i = 0; i < kVecRows; ++i)
      if (r0 + i < rows) store_f32(dst + (r0 + i) * dst_stride + c, v[i]);
  }
}

template <typename T>
__global__ void swiglu_vec4_kernel(const T* gate, const T* __restrict__ up, int rows, int64_t cols, int64_t in_stride,
                                   T* out, int64_t out_stride) {
  const int64_t c = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) * 4;
  if (c >= cols) return;
  for (int r0 = blockIdx.y * kVecRows; r0 < rows; r0 += gridDim.y * kVecRows) {
    float g[kVecRows][4], u[kVecRows][4];
#pragma unroll
    for (int i = 0; i < kVecRows; ++i)
      if (r0 + i < rows) {
        load_f32(gate + (r0 + i) * in_stride + c, g[i]);
        load_f32(up + (r0 + i) * in_stride + c, u[i]);
      }
#pragma unroll
    for (int i = 0; i < kVecRows; ++i)
      if (r0 + i < rows) {
        for (int e = 0; e < 4; ++e) g[i][e] = swiglu_value(g[i][e], u[i][e]);
        store_f32(out + (r0 + i) * out_stride + c, g[i]);
      }
  }
}

__global__ void fill_bias_kernel(float* __restrict__ out, int n, int64_t cols, const void* __restrict__ bias,
                                 DType dt) {
  int64_t total = static_cast<int64_t>(n) * cols;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[i] = load_as_f32(bias, dt, i % cols);
}

constexpr int kBlock = 256;
// Rows from which the four-column kernels are used: prefill; decode keeps its kernels.
constexpr int kVecMinRows = 64;

bool vec4_rows_ok(int rows, int64_t cols, std::initializer_list<int64_t> strides,
                  std::initializer_list<const void*> ptrs) {
  return rows >= kVecMinRows && vector_rows(4, cols, strides, ptrs, 16);
}

dim3 vec4_grid(int rows, int64_t cols) {
  return dim3(static_cast<unsigned>((cols / 4 + kBlock - 1) / kBlock),
              static_cast<unsigned>(std::min((rows + kVecRows - 1) / kVecRows, 65535)));
}

template <typename T>
void convert_rows_vec4(const float* x, int rows, int64_t cols, int64_t x_stride, T* dst, cudaStream_t s) {
  convert_rows_vec4_kernel<<<vec4_grid(rows, cols), kBlock, 0, s>>>(x, rows, cols, x_stride, dst, cols);
  HI_CUDA_CHECK_LAUNCH("convert_rows_vec4_kernel");
}

template <typename T>
void swiglu_rows(const T* gate, const T* up, int rows, int64_t cols, int64_t in_stride, T* out, int64_t out_stride,
                 cudaStream_t s) {
  const int64_t n = static_cast<int64_t>(rows) * cols;
  if (n <= 0) return;
  if (rows >= kVecMinRows && vector_rows(4, cols, {in_stride, out_stride}, {gate, up, out}, 4 * sizeof(T))) {
    swiglu_vec4_kernel<<<vec4_grid(rows, cols), kBlock, 0, s>>>(gate, up, rows, cols, in_stride, out, out_stride);
    HI_CUDA_CHECK_LAUNCH("swiglu_vec4_kernel");
    return;
  }
  launch_maybe_pdl(swiglu_kernel<T>, dim3(grid_for(n, kBlock)), dim3(kBlock), 0, s, gate, up, rows, cols, in_stride,
                   out, out_stride);
  HI_CUDA_CHECK_LAUNCH("swiglu_kernel");
}

}  // namespace

void launch_swiglu(const float* gate, const float* up, int rows, int64_t cols, int64_t in_stride, float* out,
                   int64_t out_stride, cudaStream_t s) {
  swiglu_rows(gate, up, rows, cols, in_stride, out, out_stride, s);
}

void launch_swiglu_16(const void* gate, const void* up, DType dt, int rows, int64_t cols, int64_t in_stride, void* out,
                      int64_t out_stride, cudaStream_t s) {
  if (dt == DType::BF16) {
    using T = __nv_bfloat16;
    swiglu_rows(static_cast<const T*>(gate), static_cast<const T*>(up), rows, cols, in_stride, static_cast<T*>(out),
                out_stride, s);
  } else {
    HI_CHECK(dt == DType::F16, "cuda swiglu: rows of " << dtype_name(dt) << ", expected BF16 or F16");
    using T = __half;
    swiglu_rows(static_cast<const T*>(gate), static_cast<const T*>(up), rows, cols, in_stride, static_cast<T*>(out),
                out_stride, s);
  }
}

void launch_add(float* x, const float* y, int64_t n, cudaStream_t s) {
  if (n <= 0) return;
  launch_maybe_pdl(add_kernel, dim3(grid_for(n, kBlock)), dim3(kBlock), 0, s, x, y, n);
  HI_CUDA_CHECK_LAUNCH("add_kernel");
}

void launch_store_kv(const float* src, int64_t src_stride, int n, int head_dim, DType dt, void* dst,
                     cudaStream_t s) {
  int64_t total = static_cast<int64_t>(n) * head_dim;
  if (total <= 0) return;
  if (vec4_rows_ok(n, head_dim, {src_stride}, {src, dst})) {
    switch (dt) {
      case DType::F32: return convert_rows_vec4(src, n, head_dim, src_stride, static_cast<float*>(dst), s);
      case DType::F16: return convert_rows_vec4(src, n, head_dim, src_stride, static_cast<__half*>(dst), s);
      case DType::BF16: return convert_rows_vec4(src, n, head_dim, src_stride, static_cast<__nv_bfloat16*>(dst), s);
      default: break;  // the scalar path names the dtype
    }
  }
  unsigned g = grid_for(total, kBlock);
  switch (dt) {
    case DType::F32:
      store_kv_kernel<<<g, kBlock, 0, s>>>(src, src_stride, n, head_dim, static_cast<float*>(dst));
      break;
    case DType::F16:
      store_kv_kernel<<<g, kBlock, 0, s>>>(src, src_stride, n, head_dim, static_cast<__half*>(dst));
      break;
    case DType::BF16:
      store_kv_kernel<<<g, kBlock, 0, s>>>(src, src_stride, n, head_dim, static_cast<__nv_bfloat16*>(dst));
      break;
    default: HI_FAIL("cuda store_kv: KV dtype " << dtype_name(dt) << " is not supported (F32, F16, BF16)");
  }
  HI_CUDA_CHECK_LAUNCH("store_kv_kernel");
}

void launch_store_kv_heads(const float* k, const float* v, int64_t src_stride, int n, int n_heads, int head_dim,
                           DType dt, void* const* dst_k, void* const* dst_v, cudaStream_t s) {
  const int64_t total = static_cast<int64_t>(n) * head_dim;
  if (total <= 0 || n_heads <= 0) return;
  for (int h0 = 0; h0 < n_heads; h0 += kStoreKvHeads) {
    const int heads = n_heads - h0 < kStoreKvHeads ? n_heads - h0 : kStoreKvHeads;
    KvHeadDsts d{};
    for (int i = 0; i < heads; ++i) {
      d.k[i] = dst_k[h0 + i];
      d.v[i] = dst_v[h0 + i];
    }
    const float* kh = k + static_cast<int64_t>(h0) * head_dim;
    const float* vh = v + static_cast<int64_t>(h0) * head_dim;
    // Enough blocks per head to cover a chunk's rows; one per head in decode.
    const dim3 grid(grid_for(total, kBlock), 2 * heads);
    switch (dt) {
      case DType::F32:
        launch_maybe_pdl(store_kv_heads_kernel<float>, grid, dim3(kBlock), 0, s, kh, vh, src_stride, n, head_dim, d);
        break;
      case DType::F16:
        launch_maybe_pdl(store_kv_heads_kernel<__half>, grid, dim3(kBlock), 0, s, kh, vh, src_stride, n, head_dim, d);
        break;
      case DType::BF16:
        launch_maybe_pdl(store_kv_heads_kernel<__nv_bfloat16>, grid, dim3(kBlock), 0, s, kh, vh, src_stride, n,
                         head_dim, d);
        break;
      default: HI_FAIL("cuda store_kv_heads: KV dtype " << dtype_name(dt) << " is not supported (F32, F16, BF16)");
    }
    HI_CUDA_CHECK_LAUNCH("store_kv_heads_kernel");
  }
}

void launch_convert_f32(const float* x, int64_t n, DType dt, void* dst, cudaStream_t s) {
  if (n <= 0) return;
  unsigned g = grid_for(n, kBlock);
  if (dt == DType::BF16)
    convert_kernel<<<g, kBlock, 0, s>>>(x, n, static_cast<__nv_bfloat16*>(dst));
  else if (dt == DType::F16)
    convert_kernel<<<g, kBlock, 0, s>>>(x, n, static_cast<__half*>(dst));
  else
    HI_FAIL("cuda convert: target dtype " << dtype_name(dt) << " is not F16/BF16");
  HI_CUDA_CHECK_LAUNCH("convert_kernel");
}

void launch_convert_f32_rows(const float* x, int rows, int64_t cols, int64_t x_stride, DType dt, void* dst,
                             cudaStream_t s) {
  if ((dt == DType::BF16 || dt == DType::F16) && vec4_rows_ok(rows, cols, {x_stride}, {x, dst})) {
    if (dt == DType::BF16) return convert_rows_vec4(x, rows, cols, x_stride, static_cast<__nv_bfloat16*>(dst), s);
    return convert_rows_vec4(x, rows, cols, x_stride, static_cast<__half*>(dst), s);
  }
  if (x_stride == cols) {
    launch_convert_f32(x, static_cast<int64_t>(rows) * cols, dt, dst, s);
    return;
  }
  const int64_t n = static_cast<int64_t>(rows) * cols;
  if (n <= 0) return;
  unsigned g = grid_for(n, kBlock);
  if (dt == DType::BF16)
    convert_rows_kernel<<<g, kBlock, 0, s>>>(x, rows, cols, x_stride, static_cast<__nv_bfloat16*>(dst));
  else if (dt == DType::F16)
    convert_rows_kernel<<<g, kBlock, 0, s>>>(x, rows, cols, x_stride, static_cast<__half*>(dst));
  else
    HI_FAIL("cuda convert: target dtype " << dtype_name(dt) << " is not F16/BF16");
  HI_CUDA_CHECK_LAUNCH("convert_rows_kernel");
}

void launch_fill_bias(float* out, int n, int64_t cols, const void* bias, DType dt, cudaStream_t s) {
  int64_t total = static_cast<int64_t>(n) * cols;
  if (total <= 0) return;
  fill_bias_kernel<<<grid_for(total, kBlock), kBlock, 0, s>>>(out, n, cols, bias, dt);
  HI_CUDA_CHECK_LAUNCH("fill_bias_kernel");
}

}  // namespace headinfer::cuda
