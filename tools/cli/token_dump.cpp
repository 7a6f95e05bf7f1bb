// Token-id files in and logits out, for parity checks against other engines
// (scripts/reference/hf_parity.py): `generate --prompt-ids` and `--dump-logits`.
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "headinfer/error.hpp"

namespace headinfer::cli {

std::vector<int32_t> read_token_ids(const std::string& path, int vocab_size) {
  std::ifstream in(path, std::ios::binary);
  HI_CHECK(in, path << ": cannot open the token id file (--prompt-ids)");
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  for (char& c : text)
    if (c == ',' || c == '[' || c == ']') c = ' ';
  std::istringstream words(text);
  std::vector<int32_t> ids;
  std::string w;
  while (words >> w) {
    size_t used = 0;
    long long v = -1;
    try {
      v = std::stoll(w, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    HI_CHECK(used == w.size() && v >= 0 && v < vocab_size,
             path << ": token " << ids.size() << ": '" << w << "' is not a token id (expected 0.." << vocab_size - 1
                  << ")");
    ids.push_back(static_cast<int32_t>(v));
  }
  HI_CHECK(!ids.empty(), path << ": no token ids (--prompt-ids)");
  return ids;
}

void write_logits_dump(const std::string& path, const std::vector<int32_t>& prompt, const std::vector<float>& logits,
                       const std::vector<int32_t>& generated) {
  nlohmann::ordered_json j;
  j["prompt_tokens"] = prompt.size();
  j["vocab_size"] = logits.size();
  j["generated_ids"] = generated;
  j["last_prompt_logits"] = logits;  // floats widened to double exactly: the f32 bits survive
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  HI_CHECK(out, path << ": cannot create (--dump-logits)");
  out << j.dump() << "\n";
  out.close();
  HI_CHECK(out.good(), path << ": write failed (--dump-logits)");
}

}  // namespace headinfer::cli
