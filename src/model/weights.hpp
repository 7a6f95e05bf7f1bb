// The tensors of a loaded model, in HF layout and HF's rotate-half RoPE row order
// (loaders of interleaved-order formats such as GGUF permute Q/K rows back).
// Views point into mapped files or into storage this struct owns.
#pragma once

#include <memory>
#include <vector>

#include "format/tensor.hpp"

namespace headinfer {

struct LayerWeights {
  Tensor attn_norm;           // [hidden]
  Tensor wq, wk, wv, wo;      // [n_heads*hd, hidden], [n_kv*hd, hidden] x2, [hidden, n_heads*hd]
  Tensor bq, bk, bv;          // optional (Qwen2)
  Tensor ffn_norm;            // [hidden]
  Tensor w_gate, w_up, w_down;  // [ffn, hidden] x2, [hidden, ffn]
};

struct ModelWeights {
  Tensor tok_embd;  // [vocab, hidden]
  Tensor out_norm;  // [hidden]
  Tensor lm_head;   // [vocab, hidden]; same data as tok_embd when tied
  std::vector<LayerWeights> layers;

  // Keeps mapped files and converted copies alive as long as the views above.
  std::vector<std::shared_ptr<const void>> keep_alive;

  // Sum of bytes of all distinct tensors (tied embeddings counted once).
  size_t total_bytes() const;
  int64_t parameter_count() const;
};

}  // namespace headinfer
