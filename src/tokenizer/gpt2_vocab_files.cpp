// GPT-2's two-file vocabulary: vocab.json (piece -> id) and merges.txt ("a b" per
// line in rank order, optional "#version" header). encoder.json + vocab.bpe is the
// same format under OpenAI's original names.
#include <nlohmann/json.hpp>

#include "headinfer/error.hpp"
#include "tokenizer/loaders.hpp"

namespace headinfer {
namespace {

// The Llama 3 base vocabulary has exactly this many ranks; shipped as vocab/merges
// files (e.g. by ollama) it still needs Llama 3's pre-tokenizer and special tokens.
constexpr size_t kLlama3BaseVocab = 128000;

}  // namespace

VocabSpec load_vocab_json_and_merges(const std::string& vocab_path, const std::string& merges_path) {
  nlohmann::json vocab;
  try {
    vocab = nlohmann::json::parse(read_file_bytes(vocab_path));
  } catch (const nlohmann::json::exception& e) {
    HI_FAIL(vocab_path << ": json: " << e.what());
  }
  HI_CHECK(vocab.is_object(), vocab_path << ": top level: expected an object of piece -> id");
  VocabSpec spec;
  spec.model = VocabSpec::Model::Bpe;
  spec.pre = "gpt2";
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    HI_CHECK(it.value().is_number_integer(), vocab_path << ": '" << it.key() << "': id is not an integer");
    int64_t id = it.value().get<int64_t>();
    HI_CHECK(id >= 0 && id < (1 << 24), vocab_path << ": '" << it.key() << "': id " << id << " out of range");
    if (static_cast<size_t>(id) >= spec.tokens.size()) spec.tokens.resize(id + 1);
    spec.tokens[id] = it.key();
  }
  spec.types.assign(spec.tokens.size(), VocabSpec::Normal);
  for (size_t id = 0; id < spec.tokens.size(); ++id)
    if (spec.tokens[id].empty()) spec.types[id] = VocabSpec::Unused;  // hole in the id space

  const std::string merges = read_file_bytes(merges_path);
  for (size_t pos = 0; pos < merges.size();) {
    size_t eol = merges.find('\n', pos);
    if (eol == std::string::npos) eol = merges.size();
    std::string line = merges.substr(pos, eol - pos);
    pos = eol + 1;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line.rfind("#version", 0) == 0) continue;
    spec.merges.push_back(std::move(line));
  }

  if (spec.tokens.size() == kLlama3BaseVocab) {
    add_llama3_special_tokens(spec);
  } else {
    // GPT-2 ends its vocabulary with <|endoftext|>, which is BOS, EOS and padding
    // alike; prompts get no BOS.
    for (size_t id = 0; id < spec.tokens.size(); ++id) {
      if (spec.tokens[id] == "<|endoftext|>") {
        spec.types[id] = VocabSpec::Control;
        spec.bos_id = spec.eos_id = static_cast<int>(id);
      }
    }
    spec.add_bos = false;
  }
  return spec;
}

}  // namespace headinfer
