#include "backend/backend.hpp"
#include "headinfer/error.hpp"

namespace headinfer {

AttnArgs attention_head(const AttnArgs& a, int j) {
  HI_CHECK(j >= 0 && j < a.n_kv_heads, "attention: head " << j << " of a call with " << a.n_kv_heads << " KV heads");
  HI_CHECK(!a.lse || a.n_kv_heads == 1 || a.lse_head_stride >= static_cast<int64_t>(a.n_q) * a.n_qh,
           "attention: lse_head_stride " << a.lse_head_stride << " is less than one head's " << a.n_q * a.n_qh
                                         << " values");
  HI_CHECK(!a.out_rows, "attention: a call writing rows of every head (out_rows) is not split into heads");
  AttnArgs h = a;
  h.n_kv_heads = 1;
  h.lse_head_stride = 0;
  if (j == 0) return h;
  const int64_t q_off = static_cast<int64_t>(j) * a.n_qh * a.head_dim;
  h.q = a.q + q_off;
  h.out = a.out + q_off;
  if (a.lse) h.lse = a.lse + j * a.lse_head_stride;
  if (a.part_o) h.part_o = a.part_o + q_off;
  if (a.part_lse) h.part_lse = a.part_lse + static_cast<int64_t>(j) * a.n_qh;
  for (KvPiece& p : h.pieces) {
    const size_t kv_off = dtype_bytes(a.kv_dtype, static_cast<int64_t>(j) * p.head_stride);
    p.k = static_cast<const uint8_t*>(p.k) + kv_off;
    p.v = static_cast<const uint8_t*>(p.v) + kv_off;
  }
  return h;
}

}  // namespace headinfer
