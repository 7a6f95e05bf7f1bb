// The combine of split-KV partials, one output value at a time, shared by the combine
// kernel (merge.cu) and the decode kernels' own combine (the last split block of a row
// tile merges the slots itself, so a decode step has one launch fewer in its chain).
// Both evaluate exactly this function per value, so the two give the same bits, and a
// layer whose heads are partly offloaded (combine kernel) matches an all-resident one.
#pragma once

#include <cuda_runtime.h>

#include <cmath>

#include "backend/cuda/attention_common.cuh"
#include "backend/cuda/kernels.hpp"

namespace headinfer::cuda {

// sum_s w_s o_s / sum_s w_s with w_s = exp(lse_s - max lse), in slot order; a slot whose
// lse is -inf weighs nothing and its value is never read (it may be garbage). The
// roundings are explicit so no compiler contracts them differently in either kernel.
template <typename LseAt, typename OAt>
__device__ __forceinline__ float combine_slot_value(int n_slots, LseAt lse_at, OAt o_at, float& lse_out) {
  float m = -INFINITY;
  for (int s = 0; s < n_slots; ++s) m = fmaxf(m, lse_at(s));
  float sum = 0.f, acc = 0.f;
#pragma unroll 4
  for (int s = 0; s < n_slots; ++s) {
    const float l = lse_at(s);
    const bool some = l != -INFINITY;
    const float w = some ? expf(__fsub_rn(l, m)) : 0.f;
    const float o = some ? o_at(s) : 0.f;
    sum = __fadd_rn(sum, w);
    acc = __fmaf_rn(w, o, acc);
  }
  const bool any = sum > 0.f;
  lse_out = any ? __fadd_rn(m, logf(sum)) : -INFINITY;
  return any ? __fdiv_rn(acc, sum) : 0.f;
}

// The end of a decode block that wrote its split's partial (launches with
// p.combine_counters): the split counts itself in on its (row tile, head) counter and
// the last of gridDim.y to arrive merges every slot of rows [r0, r0 + nr) into
// p.combine_out (and p.combine_lse), then zeroes the counter for the next launch.
// Every thread of the block calls it.
__device__ __forceinline__ void combine_if_last_split(const AttnParams& p, int r0, int nr, int head) {
  __shared__ unsigned last;
  __threadfence();  // this block's partial is visible device-wide before it is counted
  __syncthreads();
  if (threadIdx.x == 0) {
    unsigned* c = p.combine_counters + blockIdx.z * gridDim.x + blockIdx.x;
    last = atomicAdd(c, 1u) + 1u == gridDim.y ? 1u : 0u;
    if (last) atomicExch(c, 0u);  // every split of the tile arrived: nobody counts here again
  }
  __syncthreads();
  if (!last) return;
  __threadfence();  // the other splits' partials, counted before, are read after
  const int D = p.head_dim, n_slots = gridDim.y;
  for (int i = threadIdx.x; i < nr * D; i += blockDim.x) {
    const int r = r0 + i / D, d = i % D;
    float lse;
    const float v = combine_slot_value(
        n_slots, [&](int s) { return __ldcg(attn_lse_at(p, s, r) + head * p.lse_head_stride); },
        [&](int s) { return __ldcg(attn_out_row(p, s, r) + head * p.q_head_stride + d); }, lse);
    const int t = r / p.n_qh, h = r % p.n_qh;
    p.combine_out[t * p.o_tok_stride + static_cast<int64_t>(h) * D + head * p.q_head_stride + d] = v;
    if (d == 0 && p.combine_lse) p.combine_lse[head * p.combine_lse_head_stride + r] = lse;
  }
}

}  // namespace headinfer::cuda
