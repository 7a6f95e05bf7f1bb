// Helpers the model loaders share: shape checks against the config, owned copies
// (dequantized, converted or row-permuted), and one dtype for all matrices.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "format/tensor.hpp"
#include "model/model_config.hpp"
#include "model/weights.hpp"

namespace headinfer {

// Error "<file>: tensor '<name>': shape: expected [a, b], got [c, d]" on mismatch.
void check_shape(const Tensor& t, const std::vector<int64_t>& expected, const std::string& file);

// Checks every tensor's shape against `cfg`; `file_of` names the file a tensor came
// from (sharded checkpoints spread tensors over several).
void check_model_shapes(const ModelWeights& w, const ModelConfig& cfg,
                        const std::function<std::string(const std::string& tensor)>& file_of);

// A copy of `t` converted to F32 in storage owned by `w` (kept in keep_alive).
Tensor owned_f32(const Tensor& t, ModelWeights& w);

// llama.cpp's converter reorders each head's Q/K rows from HF's rotate-half layout
// (first half of the pairs, then second half) to Meta's interleaved one (pair
// elements adjacent). This undoes it into storage owned by `w`: per head, source
// rows (2i, 2i+1) become rows i and i + head_dim/2. Works on any dtype whose rows
// are whole (Q8_0 blocks never cross rows).
Tensor unpermute_rope_rows(const Tensor& t, int n_heads, ModelWeights& w);

// Converts every 2-D tensor (embeddings, lm_head, layer matrices) to F32 unless
// they already share one dtype; returns that dtype. Mixed files (a Q8_0 GGUF keeps
// some matrices in F16) would otherwise give the backends per-tensor dtypes.
DType unify_matrix_dtypes(ModelWeights& w);

}  // namespace headinfer
