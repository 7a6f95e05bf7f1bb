// One row's merge of two partial attention results over disjoint keys by
// log-sum-exp, shared by the merge op and the cuDNN path's epilogue so that every
// path rounds a merged value the same way.
#pragma once

#include <cmath>

namespace headinfer::cuda {

// How partial result b (log-sum-exp lb) merges into a (la). A side at -inf has no
// weight and its values are never read (they may be garbage); a_empty: a holds
// nothing yet, whatever la says.
struct LseMerge {
  bool keep_a = false;  // b adds nothing: a stays as it is (nothing to write)
  bool take_b = false;  // a has no weight: the result is b, zeros where b has none either
  float wa = 0.f, wb = 0.f, inv = 0.f;
  float lse = 0.f;  // the merged row's log-sum-exp (unless keep_a)
  // The merged value of one column (unless keep_a).
  __device__ __forceinline__ float value(float a, float b) const {
    return take_b ? (lse == -INFINITY ? 0.f : b) : (a * wa + b * wb) * inv;
  }
};

__device__ __forceinline__ LseMerge lse_merge(float la, float lb, bool a_empty) {
  LseMerge w;
  if (!a_empty && lb == -INFINITY) {  // also when both are -inf
    w.keep_a = true;
    return w;
  }
  if (a_empty || la == -INFINITY) {
    w.take_b = true;
    w.lse = lb;
    return w;
  }
  const float m = fmaxf(la, lb);
  w.wa = expf(la - m);
  w.wb = expf(lb - m);
  w.inv = 1.0f / (w.wa + w.wb);
  w.lse = m + logf(w.wa + w.wb);
  return w;
}

}  // namespace headinfer::cuda
