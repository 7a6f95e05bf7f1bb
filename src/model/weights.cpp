#include "model/weights.hpp"

#include <string>
#include <unordered_set>

namespace headinfer {
namespace {

// Calls fn once per distinct tensor. Tied tensors share their data pointer, or,
// in a shapes-only load, their name.
template <typename Fn>
void for_each_distinct(const ModelWeights& w, Fn fn) {
  std::unordered_set<const void*> seen;
  std::unordered_set<std::string> seen_names;
  auto visit = [&](const Tensor& t) {
    if (t.shape.empty()) return;
    if (t.data != nullptr ? !seen.insert(t.data).second : !seen_names.insert(t.name).second) return;
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
