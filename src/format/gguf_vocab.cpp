#include "format/gguf_vocab.hpp"

#include "headinfer/error.hpp"

namespace headinfer {
namespace {

// A token id key: absent -> fallback; present -> must index the vocabulary.
int token_id(const GgufFile& f, const std::string& path, const char* key, int fallback, size_t n_tokens) {
  auto v = f.opt_int(key);
  if (!v) return fallback;
  HI_CHECK(*v >= 0 && static_cast<uint64_t>(*v) < n_tokens,
           path << ": " << key << ": id " << *v << " is outside the vocabulary of " << n_tokens << " tokens");
  return static_cast<int>(*v);
}

}  // namespace

VocabSpec gguf_vocab(const GgufFile& f, const std::string& path) {
  HI_CHECK(f.has("tokenizer.ggml.model"), path << ": tokenizer.ggml.model: missing (the file has no tokenizer)");
  VocabSpec v;
  const std::string& model = f.get_string("tokenizer.ggml.model");
  if (model == "llama") v.model = VocabSpec::Model::Spm;
  else if (model == "gpt2") v.model = VocabSpec::Model::Bpe;
  else HI_FAIL(path << ": tokenizer.ggml.model: unsupported tokenizer '" << model << "', expected llama or gpt2");

  v.tokens = f.get_array("tokenizer.ggml.tokens", GgufType::String).strings;
  const size_t n = v.tokens.size();
  HI_CHECK(n > 0, path << ": tokenizer.ggml.tokens: empty");
  if (f.has("tokenizer.ggml.scores")) {
    const auto& s = f.get_array("tokenizer.ggml.scores", GgufType::F32).floats;
    HI_CHECK(s.size() == n, path << ": tokenizer.ggml.scores: expected " << n << " values, got " << s.size());
    v.scores.assign(s.begin(), s.end());
  }
  if (f.has("tokenizer.ggml.token_type")) {
    const auto& t = f.get_array("tokenizer.ggml.token_type", GgufType::I32).ints;
    HI_CHECK(t.size() == n, path << ": tokenizer.ggml.token_type: expected " << n << " values, got " << t.size());
    v.types.reserve(n);
    for (int64_t x : t) {
      HI_CHECK(x >= VocabSpec::Normal && x <= VocabSpec::Byte,
               path << ": tokenizer.ggml.token_type: unknown token type " << x << ", expected 1..6");
      v.types.push_back(static_cast<int32_t>(x));
    }
  }
  if (f.has("tokenizer.ggml.merges")) v.merges = f.get_array("tokenizer.ggml.merges", GgufType::String).strings;
  HI_CHECK(v.model != VocabSpec::Model::Bpe || !v.merges.empty(),
           path << ": tokenizer.ggml.merges: missing, a gpt2 tokenizer needs merges");
  v.pre = f.opt_string("tokenizer.ggml.pre").value_or("default");

  v.bos_id = token_id(f, path, "tokenizer.ggml.bos_token_id", -1, n);
  v.eos_id = token_id(f, path, "tokenizer.ggml.eos_token_id", -1, n);
  v.unk_id = token_id(f, path, "tokenizer.ggml.unknown_token_id", -1, n);
  v.pad_id = token_id(f, path, "tokenizer.ggml.padding_token_id", -1, n);
  for (const char* key : {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}) {
    int id = token_id(f, path, key, -1, n);
    if (id >= 0 && id != v.eos_id) v.eot_ids.push_back(id);
  }
  // llama.cpp's defaults: SentencePiece vocabularies add BOS and a space prefix,
  // byte-level BPE ones add BOS but no prefix.
  v.add_bos = f.opt_bool("tokenizer.ggml.add_bos_token").value_or(true);
  v.add_eos = f.opt_bool("tokenizer.ggml.add_eos_token").value_or(false);
  v.add_space_prefix =
      f.opt_bool("tokenizer.ggml.add_space_prefix").value_or(v.model == VocabSpec::Model::Spm);
  v.chat_template = f.opt_string("tokenizer.chat_template").value_or("");
  return v;
}

}  // namespace headinfer
