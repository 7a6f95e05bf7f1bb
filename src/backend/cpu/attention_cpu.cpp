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

}  // namespace

void cpu_attention(ThreadPool& pool, const AttnArgs& a) {
  HI_CHECK(a.head_dim > 0 && a.n_qh > 0, "attention: bad head shape");
  const int hd = a.head_dim;
  const int64_t rows = static_cast<int64_t>(a.n_q);
  // Parallel over query tokens; each task keeps running state for all heads of the group.
  pool.parallel_for(rows, [&](int64_t t0, int64_t t1) {
    std::vector<float> kf(static_cast<size_t>(kKeyBlock * hd)), vf(static_cast<size_t>(kKeyBlock * hd));
    std::vector<float> acc(static_cast<size_t>(a.n_qh * hd));
    std::vector<float> m(static_cast<size_t>(a.n_qh)), l(static_cast<size_t>(a.n_qh));
    std::vector<float> s(static_cast<size_t>(kKeyBlock));
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t qpos = a.q_pos0 + t;
      std::fill(acc.begin(), acc.end(), 0.f);
      std::fill(m.begin(), m.end(), kNegInf);
      std::fill(l.begin(), l.end(), 0.f);
      for (const KvPiece& p : a.pieces) {
        int64_t n_keys = p.n_tokens;
        if (a.causal) n_keys = std::min<int64_t>(n_keys, qpos - p.pos0 + 1);
        for (int64_t k0 = 0; k0 < n_keys; k0 += kKeyBlock) {
          const int64_t nb = std::min(kKeyBlock, n_keys - k0);
          const size_t off = static_cast<size_t>(k0) * hd;
          to_f32(a.kv_dtype, static_cast<const uint8_t*>(p.k) + dtype_bytes(a.kv_dtype, off), kf.data(), nb * hd);
          to_f32(a.kv_dtype, static_cast<const uint8_t*>(p.v) + dtype_bytes(a.kv_dtype, off), vf.data(), nb * hd);
          for (int h = 0; h < a.n_qh; ++h) {
            const float* q = a.q + t * a.q_stride + static_cast<int64_t>(h) * hd;
            float bmax = kNegInf;
            for (int64_t j = 0; j < nb; ++j) {
              const float* k = kf.data() + j * hd;
              float dot = 0.f;
              for (int d = 0; d < hd; ++d) dot += q[d] * k[d];
              s[static_cast<size_t>(j)] = dot * a.scale;
              bmax = std::max(bmax, s[static_cast<size_t>(j)]);
            }
            const float mnew = std::max(m[h], bmax);
            const float corr = std::exp(m[h] - mnew);  // exp(-inf) = 0 on the first block
            float* o = acc.data() + static_cast<size_t>(h) * hd;
            for (int d = 0; d < hd; ++d) o[d] *= corr;
            float lsum = l[h] * corr;
            for (int64_t j = 0; j < nb; ++j) {
              const float pj = std::exp(s[static_cast<size_t>(j)] - mnew);
              lsum += pj;
              const float* v = vf.data() + j * hd;
              for (int d = 0; d < hd; ++d) o[d] += pj * v[d];
            }
            m[h] = mnew;
            l[h] = lsum;
          }
        }
      }
      for (int h = 0; h < a.n_qh; ++h) {
        float* out = a.out + t * a.out_stride + static_cast<int64_t>(h) * hd;
        const float* o = acc.data() + static_cast<size_t>(h) * hd;
        const bool any = l[h] > 0.f;
        const float inv = any ? 1.f / l[h] : 0.f;
        for (int d = 0; d < hd; ++d) out[d] = o[d] * inv;
        if (a.lse) a.lse[t * a.n_qh + h] = any ? m[h] + std::log(l[h]) : kNegInf;
      }
    }
  });
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

}  // namespace headinfer
