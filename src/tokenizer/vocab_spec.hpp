// A tokenizer's vocabulary as a plain value, independent of the file it came from.
// GGUF's tokenizer.ggml.* metadata maps onto it field by field; the tokenizer
// factories build one from tokenizer.model / tokenizer.json / tiktoken files too.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace headinfer {

struct VocabSpec {
  enum class Model { Spm, Bpe };
  // Same values as llama.cpp's token types (GGUF tokenizer.ggml.token_type).
  enum TokenType : int32_t { Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 };

  Model model = Model::Spm;
  std::vector<std::string> tokens;   // piece text (SPM: with U+2581; BPE: byte-level encoded)
  std::vector<float> scores;         // SPM merge priorities (may be empty for BPE)
  std::vector<int32_t> types;        // TokenType per token (may be empty: all Normal)
  std::vector<std::string> merges;   // BPE: "a b" in rank order
  // BPE with no merges: a pair merges by the rank (= id) of its concatenation, as
  // tiktoken does. SPM with merges (HF tokenizer.json): pairs merge by merge rank
  // instead of by score.
  // Pre-tokenizer for BPE: "llama3", "gpt2", "qwen2", ... (GGUF tokenizer.ggml.pre)
  std::string pre = "default";
  // Explicit pre-tokenizer regexes (PCRE2 syntax, applied in sequence, each to the
  // pieces the previous one made). When non-empty they win over `pre`.
  std::vector<std::string> pre_regexes;
  // BPE: a pre-token that is itself in the vocabulary is emitted whole, unmerged
  // (Llama 3 / tiktoken behaviour; implied by pre "llama3" / "llama-bpe").
  bool ignore_merges = false;
  int bos_id = -1, eos_id = -1, unk_id = -1, pad_id = -1;
  std::vector<int> eot_ids;          // extra end-of-turn ids (e.g. Llama 3 <|eot_id|>)
  bool add_bos = true;
  bool add_eos = false;
  bool add_space_prefix = true;      // SPM: prepend U+2581
  // SPM: SentencePiece's normalizer_spec.remove_extra_whitespaces (strip, collapse
  // runs of spaces). GGUF does not carry it; llama.cpp never applies it.
  bool remove_extra_whitespaces = false;
  std::string chat_template;         // Jinja source if the file carries one (informational)
};

}  // namespace headinfer
