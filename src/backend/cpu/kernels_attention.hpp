// Internal: the per-ISA attention kernels behind cpu_attention (attention_cpu.cpp
// picks one). Both ISAs run the same operations in the same order, so they give
// bit-identical results; so do all tilings of the query rows (see the _impl header).
#pragma once

#include <cstddef>
#include <cstdint>

#include "backend/backend.hpp"

namespace headinfer::cpu_kern {

// Keys are taken this many at a time, converted to f32 once per tile; the online
// softmax rescales at tile boundaries counted from the start of the key range, so
// the tile is part of every result's sequence of operations.
constexpr int kAttnKeyTile = 64;
// The wide kernel holds query rows in vector lanes: 32 rows (two 16-lane vectors).
constexpr int kAttnWideRows = 32;
// The narrow kernel (head_dim in lanes, for calls of few rows such as decode)
// shares each converted key tile among this many rows.
constexpr int kAttnNarrowRows = 16;

// Query rows [r0, r1) of an AttnArgs (row = t * n_qh + h) against keys [k0, k1)
// of the concatenation of its pieces, as if those were the only keys: out and lse
// are normalised over that range (zero row and -inf where it holds no visible key).
struct AttnTask {
  // AttnArgs::pieces as a plain array: the AVX-512 file must not instantiate any
  // std::vector member under its target pragma.
  const KvPiece* pieces = nullptr;
  int n_pieces = 0;
  int64_t r0 = 0, r1 = 0;
  int64_t k0 = 0, k1 = 0;
  float* out = nullptr;  // row (t, h) at out + t * out_stride + h * head_dim
  int64_t out_stride = 0;
  float* lse = nullptr;  // lse[t * n_qh + h]; may be null
};

// Floats of per-thread scratch (64-byte aligned) either kernel needs.
size_t attn_scratch_floats(int head_dim);

void attend_wide_avx2(const AttnArgs& a, const AttnTask& t, float* scratch);
void attend_wide_avx512(const AttnArgs& a, const AttnTask& t, float* scratch);
void attend_narrow_avx2(const AttnArgs& a, const AttnTask& t, float* scratch);
void attend_narrow_avx512(const AttnArgs& a, const AttnTask& t, float* scratch);

// The vector exp both kernels use, on n floats (tests compare it with std::exp).
void exp_avx2(const float* x, float* y, int n);
void exp_avx512(const float* x, float* y, int n);

}  // namespace headinfer::cpu_kern
