#include "backend/cpu/attention_cpu.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <vector>

#include "backend/cpu/kernels_attention.hpp"
#include "backend/cpu/matmul.hpp"
#include "backend/cpu/thread_scratch.hpp"
#include "headinfer/error.hpp"

namespace headinfer {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Below this many query rows (n_q * n_qh) a call takes the narrow kernel: the wide
// one computes 32 rows at once and would leave most of its lanes idle.
constexpr int64_t kWideMinRows = 16;

// A call with fewer row tiles than this (decode, small chunks) is also split over
// its keys, so that several threads can work on it: into ranges of kSplitKeys keys
// or more (at most kMaxSplits ranges), each a partial (out, lse), merged in range
// order. The split depends on the call's shape only, never on the pool. A range is
// tens of microseconds of work even for one row, well above the cost of waking the
// pool; the engine's decode calls (one per KV block, 4096 F32 or 8192 BF16 keys at
// head_dim 128) stay whole or split in two.
constexpr int64_t kSplitBelowTiles = 8;
constexpr int64_t kSplitKeys = 4096;
constexpr int64_t kMaxSplits = 64;

struct AttnScratchTag;
float* attn_scratch(size_t floats) { return thread_scratch<AttnScratchTag>(floats, "attention"); }

bool use_wide(const AttnArgs& a) { return int64_t{a.n_q} * a.n_qh >= kWideMinRows; }

int64_t total_keys(const AttnArgs& a) {
  int64_t n = 0;
  for (const KvPiece& p : a.pieces) n += p.n_tokens;
  return n;
}

// Folds (o_b, lse_b) into (o_a, lse_a): the softmax over the union of both key sets.
void merge_row(float* oa, float& la, const float* ob, float lb, int head_dim) {
  if (lb == kNegInf) return;
  if (la == kNegInf) {
    std::copy(ob, ob + head_dim, oa);
    la = lb;
    return;
  }
  const float mx = std::max(la, lb);
  const float wa = std::exp(la - mx), wb = std::exp(lb - mx);
  const float inv = 1.f / (wa + wb);
  for (int d = 0; d < head_dim; ++d) oa[d] = (oa[d] * wa + ob[d] * wb) * inv;
  la = mx + std::log(wa + wb);
}

// Split mode (decode): split s covers absolute positions [s * S, (s + 1) * S) and
// is computed alone by the core over its key range, so its bits depend only on the
// keys it holds and the piece boundaries inside it.
void attention_splits(ThreadPool& pool, const AttnArgs& a) {
  const int64_t S = a.split_keys;
  HI_CHECK(a.part_o && a.part_lse, "attention: split mode needs part_o and part_lse");
  int64_t first = -1, end = -1;
  for (const KvPiece& p : a.pieces) {
    if (p.n_tokens <= 0) continue;
    HI_CHECK(end < 0 || p.pos0 == end, "attention: split mode needs pieces contiguous in position; a piece at "
                                           << p.pos0 << " follows one ending at " << end);
    if (first < 0) first = p.pos0;
    end = p.pos0 + p.n_tokens;
  }
  if (first < 0) return;
  HI_CHECK(first % S == 0,
           "attention: split mode needs the first key on a multiple of split_keys " << S << ", got position " << first);
  const int64_t rows = int64_t{a.n_q} * a.n_qh;
  const int64_t s0 = first / S, n_splits = (end - 1) / S - s0 + 1;
  pool.parallel_for(n_splits, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const int64_t s = s0 + i;
      const int64_t k0 = std::max(s * S, first) - first, k1 = std::min((s + 1) * S, end) - first;
      cpu_attention_rows(a, 0, rows, k0, k1, a.part_o + s * a.part_o_slot_stride, a.out_stride,
                         a.part_lse + s * a.part_lse_slot_stride);
    }
  });
}

}  // namespace

size_t cpu_kern::attn_scratch_floats(int head_dim) {
  const size_t hd = static_cast<size_t>(head_dim), hdp = (hd + 15) / 16 * 16;
  const size_t kv = 2 * (kAttnKeyTile * hd + 16);
  const size_t wide = 2 * hd * kAttnWideRows + size_t{kAttnKeyTile} * kAttnWideRows;
  const size_t narrow = kAttnNarrowRows * hdp + kAttnKeyTile + 16;
  return kv + std::max(wide, narrow);
}

void cpu_attention_rows(const AttnArgs& a, int64_t r0, int64_t r1, int64_t k_begin, int64_t k_end, float* out,
                        int64_t out_stride, float* lse) {
  HI_CHECK(0 <= r0 && r0 <= r1 && r1 <= int64_t{a.n_q} * a.n_qh,
           "attention: rows [" << r0 << ", " << r1 << ") out of range");
  HI_CHECK(0 <= k_begin && k_begin <= k_end && k_end <= total_keys(a),
           "attention: keys [" << k_begin << ", " << k_end << ") out of range");
  cpu_kern::AttnTask t;
  t.pieces = a.pieces.data();
  t.n_pieces = static_cast<int>(a.pieces.size());
  t.r0 = r0;
  t.r1 = r1;
  t.k0 = k_begin;
  t.k1 = k_end;
  t.out = out;
  t.out_stride = out_stride;
  t.lse = lse;
  float* scratch = attn_scratch(cpu_kern::attn_scratch_floats(a.head_dim));
  const bool avx512 = cpu_matmul_isa() == CpuIsa::Avx512;
  if (use_wide(a)) {
    if (avx512)
      cpu_kern::attend_wide_avx512(a, t, scratch);
    else
      cpu_kern::attend_wide_avx2(a, t, scratch);
  } else {
    if (avx512)
      cpu_kern::attend_narrow_avx512(a, t, scratch);
    else
      cpu_kern::attend_narrow_avx2(a, t, scratch);
  }
}

void cpu_attention(ThreadPool& pool, const AttnArgs& a) {
  HI_CHECK(a.head_dim > 0 && a.n_qh > 0 && a.n_q >= 0, "attention: bad head shape");
  HI_CHECK(a.kv_dtype == DType::F32 || a.kv_dtype == DType::F16 || a.kv_dtype == DType::BF16,
           "attention: KV dtype " << dtype_name(a.kv_dtype) << " is not supported");
  for (const KvPiece& p : a.pieces) HI_CHECK(p.n_tokens >= 0, "attention: piece of " << p.n_tokens << " tokens");
  const int64_t rows = int64_t{a.n_q} * a.n_qh;
  if (rows == 0) return;
  if (a.split_keys > 0) {
    attention_splits(pool, a);
    return;
  }
  HI_CHECK(a.q && a.out, "attention: null query or output pointer");
  const int hd = a.head_dim;
  const int64_t keys = total_keys(a);
  const int64_t row_tile = use_wide(a) ? cpu_kern::kAttnWideRows : cpu_kern::kAttnNarrowRows;
  const int64_t n_tiles = (rows + row_tile - 1) / row_tile;
  int64_t split = keys;
  if (n_tiles < kSplitBelowTiles && keys >= 2 * kSplitKeys)
    split = std::max(kSplitKeys, (keys + kMaxSplits - 1) / kMaxSplits);
  const int64_t n_splits = keys == 0 ? 1 : (keys + split - 1) / split;

  if (n_splits == 1) {
    pool.parallel_for(n_tiles, 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i)
        cpu_attention_rows(a, i * row_tile, std::min(rows, (i + 1) * row_tile), 0, keys, a.out, a.out_stride, a.lse);
    });
    return;
  }

  // Partials [split][row][d] and [split][row], then one fixed-order merge per row.
  std::vector<float> po(static_cast<size_t>(n_splits * rows * hd)), pl(static_cast<size_t>(n_splits * rows));
  pool.parallel_for(n_tiles * n_splits, 1, [&](int64_t b, int64_t e) {
    for (int64_t u = b; u < e; ++u) {
      const int64_t i = u / n_splits, s = u % n_splits;
      cpu_attention_rows(a, i * row_tile, std::min(rows, (i + 1) * row_tile), s * split,
                         std::min(keys, (s + 1) * split), po.data() + s * rows * hd, int64_t{a.n_qh} * hd,
                         pl.data() + s * rows);
    }
  });
  // On the caller: a split call has fewer than kSplitBelowTiles row tiles, so this is
  // little work next to the ranges, less than waking the pool once more.
  for (int64_t row = 0; row < rows; ++row) {
    float* o = a.out + (row / a.n_qh) * a.out_stride + (row % a.n_qh) * hd;
    std::copy_n(po.data() + row * hd, hd, o);
    float l = pl[static_cast<size_t>(row)];
    for (int64_t s = 1; s < n_splits; ++s)
      merge_row(o, l, po.data() + (s * rows + row) * hd, pl[static_cast<size_t>(s * rows + row)], hd);
    if (a.lse) a.lse[row] = l;
  }
}

void cpu_merge_attention(float* o_a, float* lse_a, const float* o_b, const float* lse_b, int n_q, int n_qh,
                         int head_dim, int64_t stride_a, int64_t stride_b) {
  for (int t = 0; t < n_q; ++t) {
    for (int h = 0; h < n_qh; ++h) {
      const int64_t i = static_cast<int64_t>(t) * n_qh + h;
      merge_row(o_a + t * stride_a + static_cast<int64_t>(h) * head_dim, lse_a[i],
                o_b + t * stride_b + static_cast<int64_t>(h) * head_dim, lse_b[i], head_dim);
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
