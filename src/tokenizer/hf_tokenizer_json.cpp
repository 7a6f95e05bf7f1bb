// Hugging Face tokenizers' tokenizer.json, BPE models only. Two shapes occur in the
// Llama family and both map onto a VocabSpec:
//  - byte-level BPE (GPT-2, Llama 3, Qwen2): pre_tokenizer Split(regex) / ByteLevel;
//  - SentencePiece converted to BPE (Llama 2, Mistral): byte_fallback, normalizer
//    Prepend("▁") + Replace(" ", "▁"); run by the SPM tokenizer with merge ranks.
#include <functional>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "headinfer/error.hpp"
#include "tokenizer/loaders.hpp"
#include "tokenizer/regex_splitter.hpp"
#include "tokenizer/utf8.hpp"

namespace headinfer {
namespace {

using nlohmann::json;

bool is_byte_piece(const std::string& s) {
  auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'); };
  return s.size() == 6 && s.compare(0, 3, "<0x") == 0 && hex(s[3]) && hex(s[4]) && s[5] == '>';
}

// Calls f on this node and, for "Sequence" nodes, on every member (depth first).
template <class F>
void for_each_step(const json& node, const char* list_key, F&& f) {
  if (!node.is_object()) return;
  if (node.value("type", "") == "Sequence" && node.contains(list_key)) {
    for (const json& child : node[list_key]) for_each_step(child, list_key, f);
    return;
  }
  f(node);
}

// Any SentencePiece marker in the normalizer/pre-tokenizer/decoder means spaces are
// U+2581, i.e. the SPM path.
bool uses_spm_spaces(const json& j) {
  bool spm = false;
  for_each_step(j.value("normalizer", json()), "normalizers", [&](const json& n) {
    std::string t = n.value("type", "");
    if (t == "Prepend" || (t == "Replace" && n.value("content", "") == utf8::kSpmSpace)) spm = true;
  });
  for_each_step(j.value("pre_tokenizer", json()), "pretokenizers", [&](const json& n) {
    if (n.value("type", "") == "Metaspace") spm = true;
  });
  return spm;
}

bool spm_adds_prefix(const json& j) {
  bool prefix = false;
  for_each_step(j.value("normalizer", json()), "normalizers", [&](const json& n) {
    if (n.value("type", "") == "Prepend" && n.value("prepend", "") == utf8::kSpmSpace) prefix = true;
  });
  for_each_step(j.value("pre_tokenizer", json()), "pretokenizers", [&](const json& n) {
    if (n.value("type", "") != "Metaspace") return;
    if (n.contains("prepend_scheme")) prefix = n["prepend_scheme"] != "never";
    else prefix = n.value("add_prefix_space", true);
  });
  return prefix;
}

std::vector<std::string> byte_level_regexes(const json& j, const std::string& path) {
  std::vector<std::string> out;
  for_each_step(j.value("pre_tokenizer", json()), "pretokenizers", [&](const json& n) {
    std::string t = n.value("type", "");
    if (t == "Split") {
      HI_CHECK(!n.value("invert", false), path << ": pre_tokenizer.Split.invert: true is not supported");
      std::string behavior = n.value("behavior", "Isolated");
      HI_CHECK(behavior == "Isolated", path << ": pre_tokenizer.Split.behavior: '" << behavior << "' is not supported");
      const json& pat = n.at("pattern");
      if (pat.contains("Regex")) {
        out.push_back(pat["Regex"].get<std::string>());
      } else {
        // A literal string: quote it so PCRE2 reads it verbatim.
        out.push_back("\\Q" + pat.at("String").get<std::string>() + "\\E");
      }
    } else if (t == "ByteLevel") {
      if (n.value("use_regex", true)) out.push_back(kGpt2Pattern);
    } else if (t == "Digits") {
      out.push_back(n.value("individual_digits", false) ? R"(\p{N})" : R"(\p{N}+)");
    } else {
      HI_FAIL(path << ": pre_tokenizer: type '" << t << "' is not supported");
    }
  });
  if (out.empty()) out.push_back(kGpt2Pattern);
  return out;
}

std::string known_pre_name(const std::vector<std::string>& regexes) {
  if (regexes.size() == 1 && regexes[0] == kLlama3Pattern) return "llama3";
  if (regexes.size() == 1 && regexes[0] == kQwen2Pattern) return "qwen2";
  if (regexes.size() == 1 && regexes[0] == kGpt2Pattern) return "gpt2";
  return "custom";
}

// BOS from the post-processor template ("<s> $A"): its first special token.
void read_bos_rule(const json& j, VocabSpec& spec, const std::function<int(const std::string&)>& id_of) {
  spec.add_bos = false;
  for_each_step(j.value("post_processor", json()), "processors", [&](const json& n) {
    if (n.value("type", "") != "TemplateProcessing" || !n.contains("single")) return;
    const json& single = n["single"];
    if (!single.is_array() || single.empty() || !single[0].contains("SpecialToken")) return;
    int id = id_of(single[0]["SpecialToken"].value("id", ""));
    if (id >= 0) {
      spec.bos_id = id;
      spec.add_bos = true;
    }
  });
}

}  // namespace

VocabSpec load_hf_tokenizer_json(const std::string& path) {
  json j;
  try {
    j = json::parse(read_file_bytes(path));
  } catch (const json::exception& e) {
    HI_FAIL(path << ": json: " << e.what());
  }
  HI_CHECK(j.is_object() && j.contains("model") && j["model"].is_object(), path << ": model: missing");
  const json& model = j["model"];
  std::string type = model.value("type", "BPE");
  HI_CHECK(type == "BPE", path << ": model.type: '" << type << "' is not supported (only BPE)");
  HI_CHECK(model.contains("vocab") && model["vocab"].is_object(), path << ": model.vocab: missing or not an object");

  VocabSpec spec;
  try {
    for (auto it = model["vocab"].begin(); it != model["vocab"].end(); ++it) {
      int64_t id = it.value().get<int64_t>();
      HI_CHECK(id >= 0 && id < (1 << 24), path << ": model.vocab['" << it.key() << "']: id " << id << " out of range");
      if (static_cast<size_t>(id) >= spec.tokens.size()) spec.tokens.resize(id + 1);
      spec.tokens[id] = it.key();
    }
    spec.types.assign(spec.tokens.size(), VocabSpec::Normal);
    if (j.contains("added_tokens") && j["added_tokens"].is_array()) {
      for (const json& t : j["added_tokens"]) {
        int64_t id = t.at("id").get<int64_t>();
        HI_CHECK(id >= 0 && id < (1 << 24), path << ": added_tokens: id " << id << " out of range");
        if (static_cast<size_t>(id) >= spec.tokens.size()) {
          spec.tokens.resize(id + 1);
          spec.types.resize(id + 1, VocabSpec::Unused);
        }
        spec.tokens[id] = t.at("content").get<std::string>();
        spec.types[id] = t.value("special", false) ? VocabSpec::Control : VocabSpec::UserDefined;
      }
    }
    for (size_t id = 0; id < spec.tokens.size(); ++id)
      if (spec.tokens[id].empty()) spec.types[id] = VocabSpec::Unused;

    if (model.contains("merges")) {
      for (const json& m : model["merges"]) {
        if (m.is_string())
          spec.merges.push_back(m.get<std::string>());
        else
          spec.merges.push_back(m.at(0).get<std::string>() + " " + m.at(1).get<std::string>());
      }
    }
  } catch (const json::exception& e) {
    HI_FAIL(path << ": model: " << e.what());
  }

  std::unordered_map<std::string, int> ids;
  for (size_t id = 0; id < spec.tokens.size(); ++id) ids.emplace(spec.tokens[id], static_cast<int>(id));
  auto id_of = [&](const std::string& s) {
    auto it = ids.find(s);
    return it == ids.end() ? -1 : it->second;
  };
  if (model.contains("unk_token") && model["unk_token"].is_string()) spec.unk_id = id_of(model["unk_token"]);

  const bool spm = model.value("byte_fallback", false) || uses_spm_spaces(j);
  if (spm) {
    spec.model = VocabSpec::Model::Spm;
    spec.add_space_prefix = spm_adds_prefix(j);
    for (size_t id = 0; id < spec.tokens.size(); ++id)
      if (spec.types[id] == VocabSpec::Normal && is_byte_piece(spec.tokens[id])) spec.types[id] = VocabSpec::Byte;
    if (spec.unk_id >= 0) spec.types[spec.unk_id] = VocabSpec::Unknown;
  } else {
    spec.model = VocabSpec::Model::Bpe;
    try {
      spec.pre_regexes = byte_level_regexes(j, path);
    } catch (const json::exception& e) {
      HI_FAIL(path << ": pre_tokenizer: " << e.what());
    }
    spec.pre = known_pre_name(spec.pre_regexes);
    spec.ignore_merges = model.value("ignore_merges", false);
  }

  read_bos_rule(j, spec, id_of);
  // EOS and end-of-turn markers by their conventional names; tokenizer_config.json
  // (applied by the directory loader) overrides.
  for (const char* name : {"</s>", "<|end_of_text|>", "<|endoftext|>", "<|im_end|>", "<|eot_id|>"}) {
    int id = id_of(name);
    if (id >= 0 && spec.eos_id < 0) spec.eos_id = id;
  }
  for (const char* name : {"<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>"}) {
    int id = id_of(name);
    if (id >= 0) spec.eot_ids.push_back(id);
  }
  return spec;
}

}  // namespace headinfer
