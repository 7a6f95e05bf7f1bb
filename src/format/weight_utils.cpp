#include "format/weight_utils.hpp"

#include <cstring>
#include <memory>

#include "headinfer/error.hpp"

namespace headinfer {
namespace {

std::string shape_string(const std::vector<int64_t>& s) {
  Tensor t;
  t.shape = s;
  return t.shape_str();
}

template <typename Fn>
void for_each_matrix(ModelWeights& w, Fn fn) {
  fn(w.tok_embd);
  fn(w.lm_head);
  for (LayerWeights& l : w.layers)
    for (Tensor* t : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) fn(*t);
}

}  // namespace

void check_shape(const Tensor& t, const std::vector<int64_t>& expected, const std::string& file) {
  HI_CHECK(t.shape == expected, file << ": tensor '" << t.name << "': shape: expected " << shape_string(expected)
                                     << ", got " << t.shape_str());
}

void check_model_shapes(const ModelWeights& w, const ModelConfig& c,
                        const std::function<std::string(const std::string& tensor)>& file_of) {
  auto check = [&](const Tensor& t, const std::vector<int64_t>& expected) { check_shape(t, expected, file_of(t.name)); };
  const int64_t q_dim = int64_t{c.n_heads} * c.head_dim, kv_dim = int64_t{c.n_kv_heads} * c.head_dim;
  check(w.tok_embd, {c.vocab_size, c.hidden});
  check(w.lm_head, {c.vocab_size, c.hidden});
  check(w.out_norm, {c.hidden});
  for (const LayerWeights& l : w.layers) {
    check(l.attn_norm, {c.hidden});
    check(l.ffn_norm, {c.hidden});
    check(l.wq, {q_dim, c.hidden});
    check(l.wk, {kv_dim, c.hidden});
    check(l.wv, {kv_dim, c.hidden});
    check(l.wo, {c.hidden, q_dim});
    check(l.w_gate, {c.ffn_hidden, c.hidden});
    check(l.w_up, {c.ffn_hidden, c.hidden});
    check(l.w_down, {c.hidden, c.ffn_hidden});
    if (c.qkv_bias) {
      check(l.bq, {q_dim});
      check(l.bk, {kv_dim});
      check(l.bv, {kv_dim});
    }
  }
}

Tensor owned_f32(const Tensor& t, ModelWeights& w) {
  const int64_t n = t.numel();
  std::shared_ptr<float[]> buf(new float[static_cast<size_t>(n)]);
  to_f32(t.dtype, t.data, buf.get(), n);
  Tensor out = t;
  out.dtype = DType::F32;
  out.data = buf.get();
  w.keep_alive.push_back(std::shared_ptr<const void>(buf, buf.get()));
  return out;
}

Tensor unpermute_rope_rows(const Tensor& t, int n_heads, ModelWeights& w) {
  const int64_t rows = t.shape.empty() ? 0 : t.shape[0];
  HI_CHECK(n_heads > 0 && rows % (2 * n_heads) == 0,
           "tensor '" << t.name << "': " << rows << " rows do not split into " << n_heads << " heads of even size");
  const int64_t head_dim = rows / n_heads, half = head_dim / 2;
  const size_t row_bytes = t.nbytes() / static_cast<size_t>(rows);
  std::shared_ptr<uint8_t[]> buf(new uint8_t[t.nbytes()]);
  auto* src = static_cast<const uint8_t*>(t.data);
  for (int64_t h = 0; h < n_heads; ++h) {
    for (int64_t i = 0; i < half; ++i) {
      for (int64_t j = 0; j < 2; ++j) {
        int64_t from = h * head_dim + 2 * i + j, to = h * head_dim + j * half + i;
        std::memcpy(buf.get() + to * row_bytes, src + from * row_bytes, row_bytes);
      }
    }
  }
  Tensor out = t;
  out.data = buf.get();
  w.keep_alive.push_back(std::shared_ptr<const void>(buf, buf.get()));
  return out;
}

DType unify_matrix_dtypes(ModelWeights& w) {
  const DType first = w.tok_embd.dtype;
  bool mixed = false;
  for_each_matrix(w, [&](Tensor& t) { mixed |= t.dtype != first; });
  if (!mixed) return first;
  const void* embd_data = w.tok_embd.data;
  for_each_matrix(w, [&](Tensor& t) {
    if (t.dtype == DType::F32) return;
    // A tied lm_head shares tok_embd's data: convert once and alias again.
    if (&t == &w.lm_head && t.data == embd_data) {
      t.data = w.tok_embd.data;
      t.dtype = w.tok_embd.dtype;
      return;
    }
    t = owned_f32(t, w);
  });
  return DType::F32;
}

}  // namespace headinfer
