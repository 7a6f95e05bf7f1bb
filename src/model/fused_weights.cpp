#include "model/fused_weights.hpp"

#include "headinfer/error.hpp"

namespace headinfer {
namespace {

FusedRows stack(std::vector<const Tensor*> parts) {
  FusedRows f;
  f.parts = std::move(parts);
  f.cols = f.parts.front()->cols();
  f.dtype = prepared_dtype(f.parts.front()->dtype);
  for (const Tensor* t : f.parts) {
    HI_CHECK(t->shape.size() == 2, "weights: " << t->name << " has shape " << t->shape_str() << ", expected a matrix");
    HI_CHECK(t->cols() == f.cols, "weights: " << t->name << " has " << t->cols() << " columns, "
                                              << f.parts.front()->name << " has " << f.cols
                                              << " (they run as one GEMM)");
    // Mixed dtypes meet in F32: the CPU converts every weight exactly to f32 anyway.
    if (prepared_dtype(t->dtype) != f.dtype) f.dtype = DType::F32;
    f.rows += t->rows();
  }
  return f;
}

}  // namespace

FusedRows fused_qkv(const LayerWeights& w) { return stack({&w.wq, &w.wk, &w.wv}); }

FusedRows fused_gate_up(const LayerWeights& w) { return stack({&w.w_gate, &w.w_up}); }

FusedVector fused_qkv_bias(const LayerWeights& w) {
  FusedVector v;
  v.parts = {&w.bq, &w.bk, &w.bv};
  for (const Tensor* m : {&w.wq, &w.wk, &w.wv}) v.lengths.push_back(m->rows());
  for (size_t i = 0; i < v.parts.size(); ++i) {
    const Tensor& b = *v.parts[i];
    if (b.shape.empty()) continue;
    HI_CHECK(b.numel() == v.lengths[i],
             "weights: " << b.name << " has " << b.numel() << " values for " << v.lengths[i] << " outputs");
    v.any = true;
  }
  for (int64_t n : v.lengths) v.length += n;
  return v;
}

}  // namespace headinfer
