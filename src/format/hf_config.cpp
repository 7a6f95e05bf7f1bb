#include "format/hf_config.hpp"

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "headinfer/error.hpp"

namespace headinfer {
namespace {

using json = nlohmann::json;

// Reads config fields with errors that name the file and field.
class Fields {
 public:
  Fields(const json& j, const std::string& origin) : j_(j), origin_(origin) {}

  bool has(const char* key) const { return j_.contains(key) && !j_.at(key).is_null(); }

  int64_t integer(const char* key) const {
    HI_CHECK(has(key), origin_ << ": " << key << ": missing");
    return integer_of(j_.at(key), key);
  }
  int64_t integer(const char* key, int64_t fallback) const { return has(key) ? integer(key) : fallback; }

  double number(const char* key, double fallback) const {
    if (!has(key)) return fallback;
    const json& v = j_.at(key);
    HI_CHECK(v.is_number(), origin_ << ": " << key << ": expected a number, got " << v.type_name());
    return v.get<double>();
  }

  bool boolean(const char* key, bool fallback) const {
    if (!has(key)) return fallback;
    const json& v = j_.at(key);
    HI_CHECK(v.is_boolean(), origin_ << ": " << key << ": expected true or false, got " << v.dump());
    return v.get<bool>();
  }

  std::string string(const char* key, const std::string& fallback) const {
    if (!has(key)) return fallback;
    const json& v = j_.at(key);
    HI_CHECK(v.is_string(), origin_ << ": " << key << ": expected a string, got " << v.type_name());
    return v.get<std::string>();
  }

  int64_t integer_of(const json& v, const std::string& key) const {
    HI_CHECK(v.is_number_integer() || (v.is_number_float() && v.get<double>() == static_cast<int64_t>(v.get<double>())),
             origin_ << ": " << key << ": expected an integer, got " << v.dump());
    return v.is_number_integer() ? v.get<int64_t>() : static_cast<int64_t>(v.get<double>());
  }

  int small_int(const char* key) const {
    int64_t v = integer(key);
    HI_CHECK(v >= 0 && v <= (int64_t{1} << 31) - 1, origin_ << ": " << key << ": " << v << " is out of range");
    return static_cast<int>(v);
  }

 private:
  const json& j_;
  const std::string& origin_;
};

std::string arch_from_architectures(const json& j) {
  auto it = j.find("architectures");
  if (it == j.end() || !it->is_array() || it->empty() || !(*it)[0].is_string()) return "";
  std::string a = (*it)[0].get<std::string>();
  if (a == "LlamaForCausalLM") return "llama";
  if (a == "MistralForCausalLM") return "mistral";
  if (a == "Qwen2ForCausalLM") return "qwen2";
  return a;
}

RopeScaling parse_rope_scaling(const json& block, const std::string& origin, const std::string& field) {
  RopeScaling rs;
  HI_CHECK(block.is_object(), origin << ": " << field << ": expected an object, got " << block.type_name());
  Fields f(block, origin);
  // transformers 4.x used "type", later "rope_type"; both appear in real configs.
  std::string type = f.string("rope_type", f.string("type", "default"));
  auto need_factor = [&] {
    HI_CHECK(f.has("factor"), origin << ": " << field << ".factor: missing for rope_type " << type);
    rs.factor = f.number("factor", 1.0);
  };
  if (type == "default" || type == "none") {
    rs.type = RopeScaling::Type::None;
  } else if (type == "linear") {
    rs.type = RopeScaling::Type::Linear;
    need_factor();
  } else if (type == "dynamic") {
    rs.type = RopeScaling::Type::Dynamic;
    need_factor();
  } else if (type == "llama3") {
    rs.type = RopeScaling::Type::Llama3;
    need_factor();
    rs.low_freq_factor = f.number("low_freq_factor", rs.low_freq_factor);
    rs.high_freq_factor = f.number("high_freq_factor", rs.high_freq_factor);
    rs.original_max_position = f.integer("original_max_position_embeddings", rs.original_max_position);
  } else {
    HI_FAIL(origin << ": " << field << ".rope_type: unsupported value '" << type
                   << "', expected default, linear, dynamic or llama3");
  }
  return rs;
}

}  // namespace

ModelConfig parse_hf_config(const json& j, const std::string& origin) {
  HI_CHECK(j.is_object(), origin << ": expected a JSON object, got " << j.type_name());
  Fields f(j, origin);
  ModelConfig c;

  std::string from_archs = arch_from_architectures(j);
  c.arch = f.string("model_type", from_archs);
  HI_CHECK(!c.arch.empty(), origin << ": model_type: missing (and no architectures field)");
  HI_CHECK(c.arch == "llama" || c.arch == "mistral" || c.arch == "qwen2",
           origin << ": model_type: unsupported architecture '" << c.arch << "', expected llama, mistral or qwen2");
  HI_CHECK(f.string("hidden_act", "silu") == "silu",
           origin << ": hidden_act: unsupported activation '" << f.string("hidden_act", "") << "', expected silu");

  c.n_layers = f.small_int("num_hidden_layers");
  c.hidden = f.small_int("hidden_size");
  c.n_heads = f.small_int("num_attention_heads");
  c.n_kv_heads = f.has("num_key_value_heads") ? f.small_int("num_key_value_heads") : c.n_heads;
  HI_CHECK(c.n_heads > 0, origin << ": num_attention_heads: expected a positive value, got " << c.n_heads);
  c.head_dim = f.has("head_dim") ? f.small_int("head_dim") : c.hidden / c.n_heads;
  c.ffn_hidden = f.small_int("intermediate_size");
  c.vocab_size = f.small_int("vocab_size");
  c.max_position = f.integer("max_position_embeddings");
  c.rms_eps = static_cast<float>(f.number("rms_norm_eps", 1e-6));
  c.tie_embeddings = f.boolean("tie_word_embeddings", false);
  c.rope_theta = f.number("rope_theta", 10000.0);

  if (f.has("rope_scaling")) c.rope_scaling = parse_rope_scaling(j.at("rope_scaling"), origin, "rope_scaling");
  // transformers 5 moved rope_theta and the scaling parameters into one block.
  if (f.has("rope_parameters")) {
    const json& rp = j.at("rope_parameters");
    c.rope_scaling = parse_rope_scaling(rp, origin, "rope_parameters");
    c.rope_theta = Fields(rp, origin).number("rope_theta", c.rope_theta);
  }

  // Qwen2 always has q/k/v biases; Llama's attention_bias also biases o_proj, which
  // our weights have no slot for.
  c.qkv_bias = c.arch == "qwen2";
  HI_CHECK(c.arch == "qwen2" || !f.boolean("attention_bias", false),
           origin << ": attention_bias: true is not supported for " << c.arch << " (o_proj bias)");
  HI_CHECK(!f.boolean("mlp_bias", false), origin << ": mlp_bias: true is not supported");

  c.bos_id = static_cast<int>(f.integer("bos_token_id", -1));
  if (f.has("eos_token_id")) {
    const json& e = j.at("eos_token_id");
    if (e.is_array()) {
      for (const json& id : e) c.eos_ids.push_back(static_cast<int>(f.integer_of(id, "eos_token_id")));
    } else {
      c.eos_ids.push_back(static_cast<int>(f.integer_of(e, "eos_token_id")));
    }
  }
  return c;
}

ModelConfig load_hf_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  HI_CHECK(in.good(), path << ": cannot open config");
  std::stringstream ss;
  ss << in.rdbuf();
  json j = json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  HI_CHECK(!j.is_discarded(), path << ": not valid JSON");
  ModelConfig c = parse_hf_config(j, path);
  c.validate(path);
  return c;
}

}  // namespace headinfer
