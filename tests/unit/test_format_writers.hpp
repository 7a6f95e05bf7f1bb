// Minimal writers for safetensors and GGUF files, so format tests can build valid
// files and then corrupt them field by field. Test-only: the engine never writes.
#pragma once

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace headinfer::test {

using Bytes = std::vector<uint8_t>;

template <typename T>
void put(Bytes& b, T v) {
  uint8_t raw[sizeof(T)];
  std::memcpy(raw, &v, sizeof(T));
  b.insert(b.end(), raw, raw + sizeof(T));
}

inline void put_bytes(Bytes& b, const void* p, size_t n) {
  auto* c = static_cast<const uint8_t*>(p);
  b.insert(b.end(), c, c + n);
}

inline void write_file(const std::string& path, const Bytes& b) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

inline void write_text(const std::string& path, const std::string& s) {
  std::ofstream out(path, std::ios::binary);
  out << s;
}

inline Bytes read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), {});
}

// A fresh directory under the system temp dir, removed with its contents at scope end.
class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = (std::filesystem::temp_directory_path() / ("headinfer_test_" + std::to_string(rd()) + std::to_string(rd())))
                .string();
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// safetensors: tensors laid out back to back in the order added.
class SafetensorsWriter {
 public:
  void add(const std::string& name, const std::string& dtype, std::vector<int64_t> shape, const Bytes& data) {
    header_[name] = {{"dtype", dtype}, {"shape", shape}, {"data_offsets", {data_.size(), data_.size() + data.size()}}};
    data_.insert(data_.end(), data.begin(), data.end());
  }
  void add_f32(const std::string& name, std::vector<int64_t> shape, const std::vector<float>& v) {
    Bytes b(v.size() * 4);
    std::memcpy(b.data(), v.data(), b.size());
    add(name, "F32", std::move(shape), b);
  }
  nlohmann::json& header() { return header_; }
  Bytes bytes() const { return assemble(header_.dump(), data_); }
  static Bytes assemble(const std::string& header, const Bytes& data) {
    Bytes b;
    put<uint64_t>(b, header.size());
    put_bytes(b, header.data(), header.size());
    b.insert(b.end(), data.begin(), data.end());
    return b;
  }

 private:
  nlohmann::json header_ = nlohmann::json::object();
  Bytes data_;
};

// GGUF v3 (or v2): metadata and tensors in the order added, data aligned to 32.
class GgufWriter {
 public:
  enum : uint32_t { U8 = 0, I8, U16, I16, U32, I32, F32, Bool, String, Array, U64, I64, F64 };

  uint32_t version = 3;
  uint64_t alignment = 32;

  void kv_u32(const std::string& k, uint32_t v) { key(k, U32); put(kv_, v); }
  void kv_i32(const std::string& k, int32_t v) { key(k, I32); put(kv_, v); }
  void kv_u64(const std::string& k, uint64_t v) { key(k, U64); put(kv_, v); }
  void kv_f32(const std::string& k, float v) { key(k, F32); put(kv_, v); }
  void kv_bool(const std::string& k, bool v) { key(k, Bool); put<uint8_t>(kv_, v ? 1 : 0); }
  void kv_str(const std::string& k, const std::string& v) { key(k, String); str(kv_, v); }
  void kv_strs(const std::string& k, const std::vector<std::string>& v) {
    key(k, Array);
    put<uint32_t>(kv_, String);
    put<uint64_t>(kv_, v.size());
    for (const auto& s : v) str(kv_, s);
  }
  void kv_f32s(const std::string& k, const std::vector<float>& v) {
    key(k, Array);
    put<uint32_t>(kv_, F32);
    put<uint64_t>(kv_, v.size());
    for (float f : v) put(kv_, f);
  }
  void kv_i32s(const std::string& k, const std::vector<int32_t>& v) {
    key(k, Array);
    put<uint32_t>(kv_, I32);
    put<uint64_t>(kv_, v.size());
    for (int32_t x : v) put(kv_, x);
  }
  // Raw metadata: key, type, then value bytes written by the caller.
  Bytes& kv_raw(const std::string& k, uint32_t type) { key(k, type); return kv_; }

  // dims innermost first, as GGUF stores them.
  void tensor(const std::string& name, uint32_t ggml_type, std::vector<uint64_t> dims, const Bytes& data) {
    while (data_.size() % alignment) data_.push_back(0);
    str(infos_, name);
    put<uint32_t>(infos_, static_cast<uint32_t>(dims.size()));
    for (uint64_t d : dims) put(infos_, d);
    put(infos_, ggml_type);
    put<uint64_t>(infos_, data_.size());
    data_.insert(data_.end(), data.begin(), data.end());
    ++n_tensors_;
  }
  void tensor_f32(const std::string& name, std::vector<uint64_t> dims, const std::vector<float>& v) {
    Bytes b(v.size() * 4);
    std::memcpy(b.data(), v.data(), b.size());
    tensor(name, 0, std::move(dims), b);
  }

  Bytes bytes() const {
    Bytes b;
    put_bytes(b, "GGUF", 4);
    put<uint32_t>(b, version);
    put<uint64_t>(b, n_tensors_);
    put<uint64_t>(b, n_kv_);
    b.insert(b.end(), kv_.begin(), kv_.end());
    b.insert(b.end(), infos_.begin(), infos_.end());
    if (n_tensors_ > 0) {
      while (b.size() % alignment) b.push_back(0);
      b.insert(b.end(), data_.begin(), data_.end());
    }
    return b;
  }

  static void str(Bytes& b, const std::string& s) {
    put<uint64_t>(b, s.size());
    put_bytes(b, s.data(), s.size());
  }

 private:
  void key(const std::string& k, uint32_t type) {
    str(kv_, k);
    put(kv_, type);
    ++n_kv_;
  }
  Bytes kv_, infos_, data_;
  uint64_t n_kv_ = 0, n_tensors_ = 0;
};

inline std::vector<float> iota_f32(size_t n, float start = 0.0f, float step = 1.0f) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = start + step * static_cast<float>(i);
  return v;
}

// A tiny Llama config.json: 2 layers, hidden 8, 2 heads of 4, 1 KV head, vocab 16.
inline nlohmann::json tiny_hf_config() {
  return nlohmann::json{{"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"}, {"hidden_size", 8},
                        {"intermediate_size", 16}, {"num_hidden_layers", 2}, {"num_attention_heads", 2},
                        {"num_key_value_heads", 1}, {"vocab_size", 16}, {"max_position_embeddings", 64},
                        {"rms_norm_eps", 1e-5}, {"rope_theta", 10000.0}, {"tie_word_embeddings", false},
                        {"bos_token_id", 1}, {"eos_token_id", 2}};
}

// Every tensor the config asks for (F32, distinct values), in HF names.
inline std::vector<std::pair<std::string, std::vector<int64_t>>> tiny_hf_shapes(const nlohmann::json& c) {
  int64_t h = c["hidden_size"], f = c["intermediate_size"], v = c["vocab_size"];
  int64_t nh = c["num_attention_heads"], nkv = c["num_key_value_heads"], hd = h / nh;
  std::vector<std::pair<std::string, std::vector<int64_t>>> s = {
      {"model.embed_tokens.weight", {v, h}}, {"model.norm.weight", {h}}};
  if (!c.value("tie_word_embeddings", false)) s.push_back({"lm_head.weight", {v, h}});
  for (int i = 0; i < c["num_hidden_layers"].get<int>(); ++i) {
    std::string p = "model.layers." + std::to_string(i) + ".";
    s.push_back({p + "input_layernorm.weight", {h}});
    s.push_back({p + "post_attention_layernorm.weight", {h}});
    s.push_back({p + "self_attn.q_proj.weight", {nh * hd, h}});
    s.push_back({p + "self_attn.k_proj.weight", {nkv * hd, h}});
    s.push_back({p + "self_attn.v_proj.weight", {nkv * hd, h}});
    s.push_back({p + "self_attn.o_proj.weight", {h, nh * hd}});
    s.push_back({p + "mlp.gate_proj.weight", {f, h}});
    s.push_back({p + "mlp.up_proj.weight", {f, h}});
    s.push_back({p + "mlp.down_proj.weight", {h, f}});
    if (c["model_type"] == "qwen2") {
      s.push_back({p + "self_attn.q_proj.bias", {nh * hd}});
      s.push_back({p + "self_attn.k_proj.bias", {nkv * hd}});
      s.push_back({p + "self_attn.v_proj.bias", {nkv * hd}});
    }
  }
  return s;
}

inline size_t shape_numel(const std::vector<int64_t>& s) {
  size_t n = 1;
  for (int64_t d : s) n *= static_cast<size_t>(d);
  return n;
}

// Writes config.json and model.safetensors (or two shards plus an index) into dir.
inline void write_tiny_hf_model(const std::string& dir, const nlohmann::json& cfg, bool sharded = false) {
  write_text(dir + "/config.json", cfg.dump(2));
  auto shapes = tiny_hf_shapes(cfg);
  SafetensorsWriter parts[2];
  nlohmann::json weight_map = nlohmann::json::object();
  float start = 0.0f;
  for (size_t k = 0; k < shapes.size(); ++k) {
    size_t part = sharded ? (k * 2 / shapes.size()) : 0;
    size_t n = shape_numel(shapes[k].second);
    parts[part].add_f32(shapes[k].first, shapes[k].second, iota_f32(n, start, 0.001f));
    start += 1.0f;
    weight_map[shapes[k].first] = "model-0000" + std::to_string(part + 1) + "-of-00002.safetensors";
  }
  if (!sharded) {
    write_file(dir + "/model.safetensors", parts[0].bytes());
    return;
  }
  write_file(dir + "/model-00001-of-00002.safetensors", parts[0].bytes());
  write_file(dir + "/model-00002-of-00002.safetensors", parts[1].bytes());
  write_text(dir + "/model.safetensors.index.json",
             nlohmann::json{{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}}.dump(2));
}

// A tiny llama GGUF (hidden 8, 2 heads of 4, 1 KV head, 1 layer, vocab 16) with an
// SPM vocabulary; callers add or corrupt fields before bytes().
inline GgufWriter tiny_gguf_model(const std::string& arch = "llama") {
  GgufWriter w;
  w.kv_str("general.architecture", arch);
  w.kv_u32(arch + ".block_count", 1);
  w.kv_u32(arch + ".embedding_length", 8);
  w.kv_u32(arch + ".attention.head_count", 2);
  w.kv_u32(arch + ".attention.head_count_kv", 1);
  w.kv_u32(arch + ".feed_forward_length", 16);
  w.kv_u32(arch + ".context_length", 64);
  w.kv_f32(arch + ".rope.freq_base", 10000.0f);
  w.kv_f32(arch + ".attention.layer_norm_rms_epsilon", 1e-5f);
  w.kv_str("tokenizer.ggml.model", "llama");
  std::vector<std::string> toks = {"<unk>", "<s>", "</s>"};
  for (int i = 3; i < 16; ++i) toks.push_back(std::string(1, static_cast<char>('a' + i)));
  w.kv_strs("tokenizer.ggml.tokens", toks);
  w.kv_f32s("tokenizer.ggml.scores", std::vector<float>(16, 0.0f));
  std::vector<int32_t> types(16, 1);
  types[0] = 2;
  types[1] = types[2] = 3;
  w.kv_i32s("tokenizer.ggml.token_type", types);
  w.kv_u32("tokenizer.ggml.bos_token_id", 1);
  w.kv_u32("tokenizer.ggml.eos_token_id", 2);
  w.tensor_f32("token_embd.weight", {8, 16}, iota_f32(128));
  w.tensor_f32("output_norm.weight", {8}, iota_f32(8));
  w.tensor_f32("output.weight", {8, 16}, iota_f32(128, 0.5f));
  w.tensor_f32("blk.0.attn_norm.weight", {8}, iota_f32(8));
  w.tensor_f32("blk.0.ffn_norm.weight", {8}, iota_f32(8));
  w.tensor_f32("blk.0.attn_q.weight", {8, 8}, iota_f32(64));
  w.tensor_f32("blk.0.attn_k.weight", {8, 4}, iota_f32(32));
  w.tensor_f32("blk.0.attn_v.weight", {8, 4}, iota_f32(32));
  w.tensor_f32("blk.0.attn_output.weight", {8, 8}, iota_f32(64));
  w.tensor_f32("blk.0.ffn_gate.weight", {8, 16}, iota_f32(128));
  w.tensor_f32("blk.0.ffn_up.weight", {8, 16}, iota_f32(128));
  w.tensor_f32("blk.0.ffn_down.weight", {16, 8}, iota_f32(128));
  return w;
}

}  // namespace headinfer::test
