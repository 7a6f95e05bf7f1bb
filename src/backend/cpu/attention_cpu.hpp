// Causal attention of one KV head's query group over a list of KV pieces, with
// online softmax (no score matrix), returning the log-sum-exp for exact merges; in
// split mode (AttnArgs::split_keys) one partial result per key split, merged later
// by cpu_combine_attention.
#pragma once

#include "backend/backend.hpp"
#include "common/thread_pool.hpp"

namespace headinfer {

void cpu_attention(ThreadPool& pool, const AttnArgs& a);
void cpu_merge_attention(float* o_a, float* lse_a, const float* o_b, const float* lse_b, int n_q, int n_qh,
                         int head_dim, int64_t stride_a, int64_t stride_b);
void cpu_combine_attention(ThreadPool& pool, const float* part_o, const float* part_lse, int n_slots, int n_q,
                           int n_qh, int head_dim, float* out, int64_t out_stride, float* lse);

}  // namespace headinfer
