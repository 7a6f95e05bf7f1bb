#include "format/hf_model.hpp"

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "format/hf_config.hpp"
#include "format/safetensors.hpp"
#include "format/weight_utils.hpp"
#include "headinfer/error.hpp"

namespace headinfer {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// The safetensors files of a directory and which file holds each tensor.
class HfTensorSet {
 public:
  explicit HfTensorSet(const std::string& dir) {
    const std::string single = dir + "/model.safetensors";
    const std::string index = dir + "/model.safetensors.index.json";
    if (fs::exists(single)) {
      files_.push_back(SafetensorsFile::open(single));
      for (const Tensor& t : files_.back().tensors()) where_[t.name] = 0;
      return;
    }
    HI_CHECK(fs::exists(index), dir << ": model.safetensors: missing (and no model.safetensors.index.json)");
    std::ifstream in(index, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    json j = json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
    HI_CHECK(!j.is_discarded() && j.is_object(), index << ": not a JSON object");
    auto wm = j.find("weight_map");
    HI_CHECK(wm != j.end() && wm->is_object(), index << ": weight_map: missing or not an object");
    std::map<std::string, size_t> shard_ids;
    for (auto it = wm->begin(); it != wm->end(); ++it) {
      HI_CHECK(it->is_string(), index << ": weight_map." << it.key() << ": expected a file name");
      std::string shard = it->get<std::string>();
      HI_CHECK(shard.find('/') == std::string::npos && shard.find("..") == std::string::npos,
               index << ": weight_map." << it.key() << ": '" << shard << "' is not a file in the directory");
      auto [pos, added] = shard_ids.emplace(shard, files_.size());
      if (added) files_.push_back(SafetensorsFile::open(dir + "/" + shard));
      where_[it.key()] = pos->second;
    }
  }

  // The tensor, or an empty Tensor when absent.
  Tensor find(const std::string& name) const {
    auto it = where_.find(name);
    if (it == where_.end()) return {};
    const Tensor* t = files_[it->second].find(name);
    HI_CHECK(t != nullptr, files_[it->second].source() << ": tensor '" << name
                                                       << "': missing (the index lists it in this file)");
    return *t;
  }

  Tensor get(const std::string& name) const {
    Tensor t = find(name);
    HI_CHECK(!t.empty(), (files_.size() == 1 ? files_[0].source() : std::string("model.safetensors.index.json"))
                             << ": tensor '" << name << "': missing");
    return t;
  }

  // File holding a tensor (for error messages).
  std::string file_of(const std::string& name) const {
    auto it = where_.find(name);
    return it == where_.end() ? "" : files_[it->second].source();
  }

  void keep_alive(ModelWeights& w) const {
    for (const SafetensorsFile& f : files_)
      if (f.mapping()) w.keep_alive.push_back(f.mapping());
  }

 private:
  std::vector<SafetensorsFile> files_;
  std::map<std::string, size_t> where_;
};

}  // namespace

LoadedModel load_hf_model(const std::string& dir) {
  const std::string config_path = dir + "/config.json";
  HI_CHECK(fs::exists(config_path), dir << ": config.json: missing");
  LoadedModel m;
  m.spec = dir;
  m.format = "hf";
  m.config = load_hf_config(config_path);
  const ModelConfig& c = m.config;

  HfTensorSet set(dir);
  ModelWeights& w = m.weights;
  set.keep_alive(w);
  w.tok_embd = set.get("model.embed_tokens.weight");
  w.out_norm = set.get("model.norm.weight");
  Tensor lm_head = set.find("lm_head.weight");
  if (!lm_head.empty() && !c.tie_embeddings) {
    w.lm_head = lm_head;
  } else {
    // Tied checkpoints usually omit lm_head; when they keep a copy, the embedding wins
    // as in transformers.
    HI_CHECK(c.tie_embeddings || !lm_head.empty(),
             dir << ": tensor 'lm_head.weight': missing and tie_word_embeddings is false");
    w.lm_head = w.tok_embd;
  }
  w.layers.resize(static_cast<size_t>(c.n_layers));
  for (int i = 0; i < c.n_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    LayerWeights& l = w.layers[static_cast<size_t>(i)];
    l.attn_norm = set.get(p + "input_layernorm.weight");
    l.ffn_norm = set.get(p + "post_attention_layernorm.weight");
    l.wq = set.get(p + "self_attn.q_proj.weight");
    l.wk = set.get(p + "self_attn.k_proj.weight");
    l.wv = set.get(p + "self_attn.v_proj.weight");
    l.wo = set.get(p + "self_attn.o_proj.weight");
    l.w_gate = set.get(p + "mlp.gate_proj.weight");
    l.w_up = set.get(p + "mlp.up_proj.weight");
    l.w_down = set.get(p + "mlp.down_proj.weight");
    if (c.qkv_bias) {
      l.bq = set.get(p + "self_attn.q_proj.bias");
      l.bk = set.get(p + "self_attn.k_proj.bias");
      l.bv = set.get(p + "self_attn.v_proj.bias");
    }
  }
  HI_CHECK(set.find("model.layers." + std::to_string(c.n_layers) + ".input_layernorm.weight").empty(),
           config_path << ": num_hidden_layers: " << c.n_layers << " but the checkpoint has more layers");

  check_model_shapes(w, c, [&](const std::string& name) { return set.file_of(name); });
  m.weight_dtype = unify_matrix_dtypes(w);
  m.load_tokenizer = [dir] { return load_tokenizer_dir(dir); };
  return m;
}

}  // namespace headinfer
