#include "model/weights.hpp"

#include <unordered_set>

namespace headinfer {
namespace {

// Calls fn once per distinct tensor (tied tensors share their data pointer).
template <typename Fn>
void for_each_distinct(const ModelWeights& w, Fn fn) {
  std::unordered_set<const void*> seen;
  auto visit = [&](const Tensor& t) {
    if (t.empty() || !seen.insert(t.data).second) return;
    fn(t);
  };
  visit(w.tok_embd);
  visit(w.out_norm);
  visit(w.lm_head);
  for (const LayerWeights& l : w.layers) {
    for (const Tensor* t : {&l.attn_norm, &l.wq, &l.wk, &l.wv, &l.wo, &l.bq, &l.bk, &l.bv, &l.ffn_norm, &l.w_gate,
                            &l.w_up, &l.w_down})
      visit(*t);
  }
}

}  // namespace

size_t ModelWeights::total_bytes() const {
  size_t total = 0;
  for_each_distinct(*this, [&](const Tensor& t) { total += t.nbytes(); });
  return total;
}

int64_t ModelWeights::parameter_count() const {
  int64_t total = 0;
  for_each_distinct(*this, [&](const Tensor& t) { total += t.numel(); });
  return total;
}

}  // namespace headinfer
