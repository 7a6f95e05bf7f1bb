// Causal attention of one KV head's query group over a list of KV pieces, with
// online softmax (no score matrix), returning the log-sum-exp for exact merges.
#pragma once

#include "backend/backend.hpp"
#include "common/thread_pool.hpp"

namespace headinfer {

void cpu_attention(ThreadPool& pool, const AttnArgs& a);
void cpu_merge_attention(float* o_a, float* lse_a, const float* o_b, const float* lse_b, int n_q, int n_qh,
                         int head_dim, int64_t stride_a, int64_t stride_b);

}  // namespace headinfer
