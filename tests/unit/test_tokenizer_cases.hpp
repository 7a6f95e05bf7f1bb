// Reads llama.cpp's tokenizer golden files: <name>.inp holds inputs, each followed by
// a line "__ggml_vocab_test__"; <name>.out holds one line of space-separated ids per
// input (no BOS), in the same order.
#pragma once

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace headinfer::test {

struct TokenizerCase {
  std::string text;
  std::vector<int32_t> ids;
};

inline std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline std::vector<TokenizerCase> read_vocab_cases(const std::string& inp_path, const std::string& out_path) {
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::string inp = slurp(inp_path);
  std::vector<TokenizerCase> cases;
  for (size_t pos = 0;;) {
    size_t at = inp.find(sep, pos);
    if (at == std::string::npos) break;
    cases.push_back({inp.substr(pos, at - pos), {}});
    pos = at + sep.size();
  }
  std::istringstream out(slurp(out_path));
  std::string line;
  for (auto& c : cases) {
    if (!std::getline(out, line)) break;
    std::istringstream ids(line);
    int32_t id;
    while (ids >> id) c.ids.push_back(id);
  }
  return cases;
}

}  // namespace headinfer::test
