#include "backend/cpu/attention_cpu.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "headinfer/error.hpp"

namespace headinfer {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Keys are converted to f32 a block at a time so each byte of KV is read once per
// query group rather than once per query head.
constexpr int64_t kKeyBlock = 256;

// Online-softmax state of one query token's head group over some keys, with the
// conversion buffers it reuses.
struct GroupState {
  std::vector<float> kf, vf, acc, m, l, s;
  GroupState(int n_qh, int hd)
      : kf(static_cast<size_t>(kKeyBlock * hd)), vf(static_cast<size_t>(kKeyBlock * hd)),
        acc(static_cast<size_t>(n_qh) * hd), m(static_cast<size_t>(n_qh)), l(static_cast<size_t>(n_qh)),
        s(static_cast<size_t>(kKeyBlock)) {}
  void reset() {
    std::fill(acc.begin(), acc.end(), 0.f);
    std::fill(m.begin(), m.end(), kNegInf);
    std::fill(l.begin(), l.end(), 0.f);
  }
};

// Attends query token t to keys [k0, k1) of piece p (indices within the piece), in
// blocks of kKeyBlock keys counted from k0. The caller has already dropped keys
// that causal masking hides (they lie at the end of the range).
void attend_keys(const AttnArgs& a, const KvPiece& p, int64_t t, int64_t k0, int64_t k1, GroupState& st) {
  const int hd = a.head_dim;
  for (int64_t kb = k0; kb < k1; kb += kKeyBlock) {
    const int64_t nb = std::min(kKeyBlock, k1 - kb);
    const size_t off = static_cast<size_t>(kb) * hd;
    to_f32(a.kv_dtype, static_cast<const uint8_t*>(p.k) + dtype_bytes(a.kv_dtype, off), st.kf.data(), nb * hd);
    to_f32(a.kv_dtype, static_cast<const uint8_t*>(p.v) + dtype_bytes(a.kv_dtype, off), st.vf.data(), nb * hd);
    for (int h = 0; h < a.n_qh; ++h) {
      const float* q = a.q + t * a.q_stride + static_cast<int64_t>(h) * hd;
      float bmax = kNegInf;
      for (int64_t j = 0; j < nb; ++j) {
        const float* k = st.kf.data() + j * hd;
        float dot = 0.f;
        for (int d = 0; d < hd; ++d) dot += q[d] * k[d];
        st.s[static_cast<size_t>(j)] = dot * a.scale;
        bmax = std::max(bmax, st.s[static_cast<size_t>(j)]);
      }
      const float mnew = std::max(st.m[h], bmax);
      const float corr = std::exp(st.m[h] - mnew);  // exp(-inf) = 0 on the first block
      float* o = st.acc.data() + static_cast<size_t>(h) * hd;
      for (int d = 0; d < hd; ++d) o[d] *= corr;
      float lsum = st.l[h] * corr;
      for (int64_t j = 0; j < nb; ++j) {
        const float pj = std::exp(st.s[static_cast<size_t>(j)] - mnew);
        lsum += pj;
        const float* v = st.vf.data() + j * hd;
        for (int d = 0; d < hd; ++d) o[d] += pj * v[d];
      }
      st.m[h] = mnew;
      st.l[h] = lsum;
    }
  }
}

// Writes the normalised result of every head of the group: head h's row at
// out + h * head_dim, its log-sum-exp at lse[h] (lse may be null).
void write_result(const AttnArgs& a, const GroupState& st, float* out, float* lse) {
  const int hd = a.head_dim;
  for (int h = 0; h < a.n_qh; ++h) {
    float* dst = out + static_cast<int64_t>(h) * hd;
    const float* o = st.acc.data() + static_cast<size_t>(h) * hd;
    const bool any = st.l[h] > 0.f;
    const float inv = any ? 1.f / st.l[h] : 0.f;
    for (int d = 0; d < hd; ++d) dst[d] = o[d] * inv;
    if (lse) lse[h] = any ? st.m[h] + std::log(st.l[h]) : kNegInf;
  }
}

// Keys of piece p that query position qpos may see (all without causal masking).
int64_t visible_keys(const AttnArgs& a, const KvPiece& p, int64_t qpos) {
  return a.causal ? std::min<int64_t>(p.n_tokens, qpos - p.pos0 + 1) : p.n_tokens;
}

void attention_whole(ThreadPool& pool, const AttnArgs& a) {
  // Parallel over query tokens; each task keeps running state for all heads of the group.
  pool.parallel_for(a.n_q, [&](int64_t t0, int64_t t1) {
    GroupState st(a.n_qh, a.head_dim);
    for (int64_t t = t0; t < t1; ++t) {
      st.reset();
      for (const KvPiece& p : a.pieces) attend_keys(a, p, t, 0, visible_keys(a, p, a.q_pos0 + t), st);
      write_result(a, st, a.out + t * a.out_stride, a.lse ? a.lse + t * a.n_qh : nullptr);
    }
  });
}

void attention_splits(ThreadPool& pool, const AttnArgs& a) {
  const int64_t S = a.split_keys;
  HI_CHECK(a.part_o && a.part_lse, "attention: split mode needs part_o and part_lse");
  std::vector<const KvPiece*> pieces;
  for (const KvPiece& p : a.pieces) {
    if (p.n_tokens <= 0) continue;
    HI_CHECK(pieces.empty() || p.pos0 == pieces.back()->pos0 + pieces.back()->n_tokens,
             "attention: split mode needs pieces contiguous in position; a piece at "
                 << p.pos0 << " follows one ending at " << pieces.back()->pos0 + pieces.back()->n_tokens);
    pieces.push_back(&p);
  }
  if (pieces.empty()) return;
  const int64_t first = pieces.front()->pos0, end = pieces.back()->pos0 + pieces.back()->n_tokens;
  HI_CHECK(first % S == 0,
           "attention: split mode needs the first key on a multiple of split_keys " << S << ", got position " << first);
  const int64_t s0 = first / S, n_splits = (end - 1) / S - s0 + 1;
  // Parallel over (query token, split): each split is computed alone.
  pool.parallel_for(a.n_q * n_splits, [&](int64_t i0, int64_t i1) {
    GroupState st(a.n_qh, a.head_dim);
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t t = i / n_splits, s = s0 + i % n_splits;
      const int64_t lo = s * S, hi = std::min(end, lo + S);
      st.reset();
      for (const KvPiece* p : pieces) {
        const int64_t k0 = std::max(lo, p->pos0) - p->pos0;
        const int64_t k1 = std::min({hi - p->pos0, p->n_tokens, visible_keys(a, *p, a.q_pos0 + t)});
        if (k0 < k1) attend_keys(a, *p, t, k0, k1, st);
      }
      write_result(a, st, a.part_o + s * a.part_o_slot_stride + t * a.out_stride,
                   a.part_lse + s * a.part_lse_slot_stride + t * a.n_qh);
    }
  });
}

}  // namespace

void cpu_attention(ThreadPool& pool, const AttnArgs& a) {
  HI_CHECK(a.head_dim > 0 && a.n_qh > 0, "attention: bad head shape");
  if (a.split_keys > 0)
    attention_splits(pool, a);
  else
    attention_whole(pool, a);
}

void cpu_merge_attention(float* o_a, float* lse_a, const float* o_b, const float* lse_b, int n_q, int n_qh,
                         int head_dim, int64_t stride_a, int64_t stride_b) {
  for (int t = 0; t < n_q; ++t) {
    for (int h = 0; h < n_qh; ++h) {
      const int64_t i = static_cast<int64_t>(t) * n_qh + h;
      const float la = lse_a[i], lb = lse_b[i];
      float* oa = o_a + t * stride_a + static_cast<int64_t>(h) * head_dim;
      const float* ob = o_b + t * stride_b + static_cast<int64_t>(h) * head_dim;
      if (lb == kNegInf) continue;
      if (la == kNegInf) {
        std::copy(ob, ob + head_dim, oa);
        lse_a[i] = lb;
        continue;
      }
      const float mx = std::max(la, lb);
      const float wa = std::exp(la - mx), wb = std::exp(lb - mx);
      const float inv = 1.f / (wa + wb);
      for (int d = 0; d < head_dim; ++d) oa[d] = (oa[d] * wa + ob[d] * wb) * inv;
      lse_a[i] = mx + std::log(wa + wb);
    }
  }
}

void cpu_combine_attention(ThreadPool& pool, const float* part_o, const float* part_lse, int n_slots, int n_q,
                           int n_qh, int head_dim, float* out, int64_t out_stride, float* lse) {
  const int64_t rows = static_cast<int64_t>(n_q) * n_qh;
  auto body = [&](int64_t r0, int64_t r1) {
    std::vector<float> acc(static_cast<size_t>(head_dim));
    for (int64_t r = r0; r < r1; ++r) {
      // Two passes over the slots in slot order: the largest lse, then the weighted sum.
      float mx = kNegInf;
      for (int s = 0; s < n_slots; ++s) mx = std::max(mx, part_lse[s * rows + r]);
      std::fill(acc.begin(), acc.end(), 0.f);
      float wsum = 0.f;
      if (mx != kNegInf) {
        for (int s = 0; s < n_slots; ++s) {
          const float l = part_lse[s * rows + r];
          if (l == kNegInf) continue;  // no keys: its values are never read
          const float w = std::exp(l - mx);
          const float* o = part_o + (s * rows + r) * head_dim;
          for (int d = 0; d < head_dim; ++d) acc[static_cast<size_t>(d)] += w * o[d];
          wsum += w;
        }
      }
      const int64_t t = r / n_qh, h = r % n_qh;
      float* dst = out + t * out_stride + h * head_dim;
      const float inv = wsum > 0.f ? 1.f / wsum : 0.f;
      for (int d = 0; d < head_dim; ++d) dst[d] = acc[static_cast<size_t>(d)] * inv;
      if (lse) lse[r] = wsum > 0.f ? mx + std::log(wsum) : kNegInf;
    }
  };
  // Waking the pool costs more than a decode step's few rows of a few slots.
  if (rows * n_slots * head_dim < (int64_t{1} << 16))
    body(0, rows);
  else
    pool.parallel_for(rows, body);
}

}  // namespace headinfer
