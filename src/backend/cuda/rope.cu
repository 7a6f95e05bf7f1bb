// Rotate-half RoPE. Angles are position * inv_freq in double, reduced modulo 2*pi
// in double (two-part 2*pi), so they stay exact at millions of positions; cos and
// sin are taken in double and rounded to f32 once per (token, frequency).
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/device_util.cuh"
#include "backend/cuda/kernels.hpp"

namespace headinfer::cuda {
namespace {

constexpr int kBlock = 128;
constexpr double kTwoPiHi = 6.283185307179586232;     // nearest double to 2*pi
constexpr double kTwoPiLo = 2.4492935982947064e-16;   // 2*pi - kTwoPiHi
constexpr double kInvTwoPi = 0.15915494309189535;

__global__ void __launch_bounds__(kBlock) rope_kernel(float* x, int64_t stride, int n_heads, int head_dim,
                                                      int64_t pos0, const double* __restrict__ inv_freq) {
  extern __shared__ float cs[];  // [half] cos, then [half] sin
  const int half = head_dim / 2;
  const int64_t t = blockIdx.x;
  const double pos = static_cast<double>(pos0 + t);
  for (int i = threadIdx.x; i < half; i += kBlock) {
    double a = pos * inv_freq[i];
    double k = rint(a * kInvTwoPi);
    double r = fma(-k, kTwoPiHi, a);
    r = fma(-k, kTwoPiLo, r);
    double sn, cn;
    sincos(r, &sn, &cn);
    cs[i] = static_cast<float>(cn);
    cs[half + i] = static_cast<float>(sn);
  }
  // The angles depend on nothing the preceding kernel writes: under programmatic
  // launch they are taken while it finishes.
  pdl_wait();
  pdl_launch_dependents();
  __syncthreads();
  float* row = x + t * stride;
  for (int j = threadIdx.x; j < n_heads * half; j += kBlock) {
    const int h = j / half, i = j % half;
    float* v = row + static_cast<int64_t>(h) * head_dim;
    const float x0 = v[i], x1 = v[i + half];
    const float c = cs[i], s = cs[half + i];
    v[i] = x0 * c - x1 * s;
    v[i + half] = x1 * c + x0 * s;
  }
}

}  // namespace

void launch_rope(float* x, int64_t stride, int n_tokens, int n_heads, int head_dim, int64_t pos0,
                 const double* inv_freq, cudaStream_t s) {
  if (n_tokens <= 0 || n_heads <= 0 || head_dim < 2) return;
  const size_t smem = sizeof(float) * static_cast<size_t>(head_dim / 2) * 2;
  launch_maybe_pdl(rope_kernel, dim3(n_tokens), dim3(kBlock), smem, s, x, stride, n_heads, head_dim, pos0, inv_freq);
  HI_CUDA_CHECK_LAUNCH("rope_kernel");
}

}  // namespace headinfer::cuda
