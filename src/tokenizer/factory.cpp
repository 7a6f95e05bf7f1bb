// Picks the tokenizer for a vocabulary and the reader for a file or model folder.
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "headinfer/error.hpp"
#include "tokenizer/bpe_tokenizer.hpp"
#include "tokenizer/loaders.hpp"
#include "tokenizer/spm_tokenizer.hpp"
#include "tokenizer/tokenizer.hpp"

namespace headinfer {
namespace fs = std::filesystem;
using nlohmann::json;

std::string read_file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  HI_CHECK(in, path << ": cannot open");
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  HI_CHECK(!in.bad(), path << ": read error");
  return data;
}

std::unique_ptr<Tokenizer> make_tokenizer(const VocabSpec& spec) {
  if (spec.model == VocabSpec::Model::Spm) return std::make_unique<SpmTokenizer>(spec);
  return std::make_unique<ByteLevelBpeTokenizer>(spec);
}

VocabSpec load_vocab_file(const std::string& path) {
  const fs::path p(path);
  const std::string name = p.filename().string();
  const fs::path dir = p.parent_path();
  if (name == "vocab.json") return load_vocab_json_and_merges(path, (dir / "merges.txt").string());
  if (name == "encoder.json") return load_vocab_json_and_merges(path, (dir / "vocab.bpe").string());
  if (p.extension() == ".json") return load_hf_tokenizer_json(path);
  const std::string bytes = read_file_bytes(path);
  if (looks_like_sentencepiece_model(bytes)) return parse_sentencepiece_model(bytes, path);
  if (looks_like_tiktoken(bytes)) return parse_tiktoken_model(bytes, path);
  HI_FAIL(path << ": format: neither a SentencePiece model, a tiktoken rank file nor tokenizer/vocab JSON");
}

std::unique_ptr<Tokenizer> load_tokenizer_file(const std::string& path) { return make_tokenizer(load_vocab_file(path)); }

namespace {

json read_json_if_present(const fs::path& p) {
  if (!fs::exists(p)) return json();
  try {
    return json::parse(read_file_bytes(p.string()));
  } catch (const json::exception& e) {
    HI_FAIL(p.string() << ": json: " << e.what());
  }
}

int find_token(const VocabSpec& spec, const std::string& text) {
  for (size_t id = 0; id < spec.tokens.size(); ++id)
    if (spec.tokens[id] == text) return static_cast<int>(id);
  return -1;
}

// "bos_token": "<s>" or {"content": "<s>", ...} or null.
std::string token_text(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return "";
}

void add_eot(VocabSpec& spec, int id) {
  if (id < 0 || id >= static_cast<int>(spec.tokens.size()) || id == spec.eos_id) return;
  for (int e : spec.eot_ids)
    if (e == id) return;
  spec.eot_ids.push_back(id);
}

// eos_token_id in config.json / generation_config.json: an int or a list of ints.
void read_eos_ids(const json& cfg, VocabSpec& spec) {
  if (!cfg.is_object() || !cfg.contains("eos_token_id")) return;
  const json& v = cfg["eos_token_id"];
  if (v.is_number_integer()) add_eot(spec, v.get<int>());
  if (v.is_array())
    for (const json& e : v)
      if (e.is_number_integer()) add_eot(spec, e.get<int>());
}

void apply_tokenizer_config(const json& cfg, const std::string& path, VocabSpec& spec) {
  if (!cfg.is_object()) return;
  if (cfg.contains("added_tokens_decoder") && cfg["added_tokens_decoder"].is_object()) {
    for (auto it = cfg["added_tokens_decoder"].begin(); it != cfg["added_tokens_decoder"].end(); ++it) {
      int id = -1;
      try {
        id = std::stoi(it.key());
      } catch (const std::exception&) {
        HI_FAIL(path << ": added_tokens_decoder: key '" << it.key() << "' is not an id");
      }
      std::string content = token_text(it.value());
      if (id < 0 || content.empty()) continue;
      if (id >= static_cast<int>(spec.tokens.size())) {
        spec.tokens.resize(id + 1);
        if (!spec.scores.empty()) spec.scores.resize(id + 1, 0.0f);
      }
      if (spec.types.size() < spec.tokens.size()) spec.types.resize(spec.tokens.size(), VocabSpec::Normal);
      spec.tokens[id] = content;
      bool special = it.value().is_object() && it.value().value("special", false);
      if (spec.types[id] != VocabSpec::Unknown && spec.types[id] != VocabSpec::Byte)
        spec.types[id] = special ? VocabSpec::Control : VocabSpec::UserDefined;
    }
  }
  if (cfg.contains("add_bos_token") && cfg["add_bos_token"].is_boolean()) spec.add_bos = cfg["add_bos_token"].get<bool>();
  if (cfg.contains("add_eos_token") && cfg["add_eos_token"].is_boolean()) spec.add_eos = cfg["add_eos_token"].get<bool>();
  if (cfg.contains("bos_token")) {
    std::string bos = token_text(cfg["bos_token"]);
    if (!bos.empty()) {
      int id = find_token(spec, bos);
      HI_CHECK(id >= 0, path << ": bos_token: '" << bos << "' is not in the vocabulary");
      spec.bos_id = id;
    }
  }
  if (cfg.contains("eos_token")) {
    std::string eos = token_text(cfg["eos_token"]);
    if (!eos.empty()) {
      int id = find_token(spec, eos);
      HI_CHECK(id >= 0, path << ": eos_token: '" << eos << "' is not in the vocabulary");
      if (spec.eos_id >= 0 && spec.eos_id != id) add_eot(spec, spec.eos_id);
      spec.eos_id = id;
    }
  }
  if (cfg.contains("chat_template")) {
    const json& t = cfg["chat_template"];
    if (t.is_string()) {
      spec.chat_template = t.get<std::string>();
    } else if (t.is_array()) {  // [{"name": "default", "template": "..."}, ...]
      for (const json& e : t)
        if (e.is_object() && e.value("name", "") == "default") spec.chat_template = e.value("template", "");
      if (spec.chat_template.empty() && !t.empty() && t[0].is_object()) spec.chat_template = t[0].value("template", "");
    }
  }
}

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer_dir(const std::string& dir) {
  const fs::path d(dir);
  HI_CHECK(fs::is_directory(d), dir << ": not a directory");
  std::string file;
  for (const char* candidate : {"tokenizer.json", "tokenizer.model", "vocab.json", "encoder.json"}) {
    if (fs::exists(d / candidate)) {
      file = (d / candidate).string();
      break;
    }
  }
  HI_CHECK(!file.empty(), dir << ": tokenizer: none of tokenizer.json, tokenizer.model, vocab.json, encoder.json");
  VocabSpec spec = load_vocab_file(file);
  const fs::path cfg_path = d / "tokenizer_config.json";
  apply_tokenizer_config(read_json_if_present(cfg_path), cfg_path.string(), spec);
  read_eos_ids(read_json_if_present(d / "config.json"), spec);
  read_eos_ids(read_json_if_present(d / "generation_config.json"), spec);
  return make_tokenizer(spec);
}

}  // namespace headinfer
