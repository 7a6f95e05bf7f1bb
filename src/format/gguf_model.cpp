#include "format/gguf_model.hpp"

#include <memory>

#include "format/gguf_vocab.hpp"
#include "format/weight_utils.hpp"
#include "headinfer/error.hpp"

namespace headinfer {
namespace {

int as_int(int64_t v, const GgufFile& f, const std::string& key) {
  HI_CHECK(v >= 0 && v <= (int64_t{1} << 31) - 1, f.source() << ": " << key << ": " << v << " is out of range");
  return static_cast<int>(v);
}

void read_rope_scaling(const GgufFile& f, const std::string& a, ModelConfig& c) {
  std::string type = f.opt_string(a + ".rope.scaling.type").value_or("none");
  // Older files wrote only a linear factor.
  if (!f.has(a + ".rope.scaling.type") && f.has(a + ".rope.scale_linear")) type = "linear";
  if (type == "none") return;
  HI_CHECK(type == "linear", f.source() << ": " << a << ".rope.scaling.type: unsupported value '" << type
                                        << "', expected none or linear");
  c.rope_scaling.type = RopeScaling::Type::Linear;
  c.rope_scaling.factor = f.opt_float(a + ".rope.scaling.factor").value_or(
      f.opt_float(a + ".rope.scale_linear").value_or(1.0));
}

// Q/K rows of llama-family GGUFs are in Meta's interleaved order; Qwen2 is converted
// without the permutation (llama.cpp runs it with NEOX, i.e. rotate-half, RoPE).
bool rows_interleaved(const std::string& arch) { return arch == "llama" || arch == "mistral"; }

// A matrix as the engine wants it: Q8_0 becomes F32 (after any row permutation,
// which is cheaper on the compact blocks), float types stay in the mapping.
Tensor prepare(Tensor t, int permute_heads, ModelWeights& w) {
  if (permute_heads > 0) t = unpermute_rope_rows(t, permute_heads, w);
  if (t.dtype == DType::Q8_0) t = owned_f32(t, w);
  return t;
}

}  // namespace

ModelConfig gguf_model_config(const GgufFile& f) {
  ModelConfig c;
  c.arch = f.get_string("general.architecture");
  HI_CHECK(c.arch == "llama" || c.arch == "mistral" || c.arch == "qwen2",
           f.source() << ": general.architecture: unsupported architecture '" << c.arch
                      << "', expected llama, mistral or qwen2");
  const std::string a = c.arch;
  auto int_key = [&](const std::string& k) { return as_int(f.get_int(a + k), f, a + k); };
  c.n_layers = int_key(".block_count");
  c.hidden = int_key(".embedding_length");
  c.n_heads = int_key(".attention.head_count");
  c.n_kv_heads = f.has(a + ".attention.head_count_kv") ? int_key(".attention.head_count_kv") : c.n_heads;
  c.ffn_hidden = int_key(".feed_forward_length");
  c.max_position = f.get_int(a + ".context_length");
  HI_CHECK(c.n_heads > 0, f.source() << ": " << a << ".attention.head_count: expected a positive value, got 0");
  c.head_dim = f.has(a + ".attention.key_length") ? int_key(".attention.key_length") : c.hidden / c.n_heads;
  if (f.has(a + ".attention.value_length"))
    HI_CHECK(int_key(".attention.value_length") == c.head_dim,
             f.source() << ": " << a << ".attention.value_length: expected " << c.head_dim << " (= key_length)");
  if (f.has(a + ".rope.dimension_count"))
    HI_CHECK(int_key(".rope.dimension_count") == c.head_dim,
             f.source() << ": " << a << ".rope.dimension_count: partial rotary embeddings are not supported, expected "
                        << c.head_dim << ", got " << f.get_int(a + ".rope.dimension_count"));
  c.rope_theta = f.opt_float(a + ".rope.freq_base").value_or(10000.0);
  c.rms_eps = static_cast<float>(f.opt_float(a + ".attention.layer_norm_rms_epsilon").value_or(1e-5));
  read_rope_scaling(f, a, c);
  c.qkv_bias = c.arch == "qwen2";

  const GgufTensorInfo* embd = f.find_tensor("token_embd.weight");
  HI_CHECK(embd != nullptr, f.source() << ": tensor 'token_embd.weight': missing");
  c.vocab_size = f.has(a + ".vocab_size") ? int_key(".vocab_size")
                                          : as_int(static_cast<int64_t>(embd->dims.back()), f, "token_embd.weight");
  c.tie_embeddings = f.find_tensor("output.weight") == nullptr;
  c.bos_id = static_cast<int>(f.opt_int("tokenizer.ggml.bos_token_id").value_or(-1));
  for (const char* key : {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}) {
    if (auto id = f.opt_int(key)) {
      int v = static_cast<int>(*id);
      bool dup = false;
      for (int e : c.eos_ids) dup |= e == v;
      if (!dup) c.eos_ids.push_back(v);
    }
  }
  // llama.cpp keeps Llama-3 RoPE scaling as precomputed per-pair divisors.
  if (f.find_tensor("rope_freqs.weight") != nullptr) {
    Tensor rf = f.tensor("rope_freqs.weight");
    HI_CHECK(rf.numel() == c.head_dim / 2, f.source() << ": tensor 'rope_freqs.weight': shape: expected ["
                                                      << c.head_dim / 2 << "], got " << rf.shape_str());
    std::vector<float> v(static_cast<size_t>(rf.numel()));
    to_f32(rf.dtype, rf.data, v.data(), rf.numel());
    c.rope_freq_factors.assign(v.begin(), v.end());
  }
  c.validate(f.source());
  return c;
}

LoadedModel load_gguf_model(const std::string& path) {
  auto file = std::make_shared<GgufFile>(GgufFile::open(path));
  const GgufFile& f = *file;
  LoadedModel m;
  m.spec = path;
  m.format = "gguf";
  m.config = gguf_model_config(f);
  const ModelConfig& c = m.config;
  ModelWeights& w = m.weights;
  w.keep_alive.push_back(f.mapping());

  const int q_perm = rows_interleaved(c.arch) ? c.n_heads : 0;
  const int k_perm = rows_interleaved(c.arch) ? c.n_kv_heads : 0;
  w.tok_embd = prepare(f.tensor("token_embd.weight"), 0, w);
  w.out_norm = f.tensor("output_norm.weight");
  w.lm_head = c.tie_embeddings ? w.tok_embd : prepare(f.tensor("output.weight"), 0, w);
  w.layers.resize(static_cast<size_t>(c.n_layers));
  for (int i = 0; i < c.n_layers; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    LayerWeights& l = w.layers[static_cast<size_t>(i)];
    l.attn_norm = prepare(f.tensor(p + "attn_norm.weight"), 0, w);
    l.ffn_norm = prepare(f.tensor(p + "ffn_norm.weight"), 0, w);
    l.wq = prepare(f.tensor(p + "attn_q.weight"), q_perm, w);
    l.wk = prepare(f.tensor(p + "attn_k.weight"), k_perm, w);
    l.wv = prepare(f.tensor(p + "attn_v.weight"), 0, w);
    l.wo = prepare(f.tensor(p + "attn_output.weight"), 0, w);
    l.w_gate = prepare(f.tensor(p + "ffn_gate.weight"), 0, w);
    l.w_up = prepare(f.tensor(p + "ffn_up.weight"), 0, w);
    l.w_down = prepare(f.tensor(p + "ffn_down.weight"), 0, w);
    if (c.qkv_bias) {
      l.bq = prepare(f.tensor(p + "attn_q.bias"), q_perm, w);
      l.bk = prepare(f.tensor(p + "attn_k.bias"), k_perm, w);
      l.bv = prepare(f.tensor(p + "attn_v.bias"), 0, w);
    }
  }
  HI_CHECK(f.find_tensor("blk." + std::to_string(c.n_layers) + ".attn_norm.weight") == nullptr,
           path << ": " << c.arch << ".block_count: " << c.n_layers << " but the file has more layers");
  check_model_shapes(w, c, [&](const std::string&) { return path; });
  m.weight_dtype = unify_matrix_dtypes(w);
  m.load_tokenizer = [file, path] { return make_tokenizer(gguf_vocab(*file, path)); };
  return m;
}

}  // namespace headinfer
