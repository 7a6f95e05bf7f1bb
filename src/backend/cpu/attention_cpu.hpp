// Causal attention of one KV head's query group over a list of KV pieces, with
// online softmax (no score matrix), returning the log-sum-exp for exact merges; in
// split mode (AttnArgs::split_keys) one partial result per key split, merged later
// by cpu_combine_attention.
#pragma once

#include "backend/backend.hpp"
#include "common/thread_pool.hpp"

namespace headinfer {

// Rows are tiled (and, for calls with few rows, keys split into fixed ranges whose
// partials merge in a fixed order) by the call's shape alone: results are bit for bit
// the same for any pool size.
void cpu_attention(ThreadPool& pool, const AttnArgs& a);

// The core, on the calling thread: query rows [r0, r1) of `a` (row = t * n_qh + h)
// against keys [k_begin, k_end) of the concatenation of a.pieces, as if those were
// all the keys. Writes out rows at out + t * out_stride + h * head_dim and, when lse
// is not null, lse[t * n_qh + h] (-inf and a zero row where the range holds no
// visible key). A row's result depends only on its own data, the key range and the
// call's shape (n_q * n_qh picks the kernel), not on r0 and r1.
void cpu_attention_rows(const AttnArgs& a, int64_t r0, int64_t r1, int64_t k_begin, int64_t k_end, float* out,
                        int64_t out_stride, float* lse);
void cpu_merge_attention(float* o_a, float* lse_a, const float* o_b, const float* lse_b, int n_q, int n_qh,
                         int head_dim, int64_t stride_a, int64_t stride_b);
void cpu_combine_attention(ThreadPool& pool, const float* part_o, const float* part_lse, int n_slots, int n_q,
                           int n_qh, int head_dim, float* out, int64_t out_stride, float* lse);

}  // namespace headinfer
