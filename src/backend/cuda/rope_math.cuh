// The arithmetic of rotate-half RoPE shared by every kernel that rotates (the RoPE
// kernels, the QKV GEMV that rotates in its epilogue): one definition, so a row rotated
// by any of them has the same bits.
#pragma once

#include <cstdint>

namespace headinfer::cuda {

constexpr double kTwoPiHi = 6.283185307179586232;    // nearest double to 2*pi
constexpr double kTwoPiLo = 2.4492935982947064e-16;  // 2*pi - kTwoPiHi
constexpr double kInvTwoPi = 0.15915494309189535;

// cos and sin of position * inv_freq, the angle reduced in double.
__device__ __forceinline__ void rope_angle(int64_t position, double inv_freq, float& c, float& s) {
  const double a = static_cast<double>(position) * inv_freq;
  const double k = rint(a * kInvTwoPi);
  double r = fma(-k, kTwoPiHi, a);
  r = fma(-k, kTwoPiLo, r);
  double sn, cn;
  sincos(r, &sn, &cn);
  c = static_cast<float>(cn);
  s = static_cast<float>(sn);
}

// One rotated pair (x0 at i, x1 at i + half), each product and sum rounded on its own:
// left to contraction, the compiler fuses a different product into an FMA in each
// kernel, and the two kernels' rows then differ in the last bit.
__device__ __forceinline__ void rotate_pair(float x0, float x1, float c, float s, float& y0, float& y1) {
  y0 = __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s));
  y1 = __fadd_rn(__fmul_rn(x1, c), __fmul_rn(x0, s));
}

}  // namespace headinfer::cuda
