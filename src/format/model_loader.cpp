#include "format/model_loader.hpp"

#include <cstring>
#include <filesystem>
#include <fstream>

#include "format/gguf_model.hpp"
#include "format/hf_model.hpp"
#include "format/needle.hpp"
#include "format/synthetic.hpp"
#include "headinfer/error.hpp"

namespace headinfer {
namespace {

bool ends_with(const std::string& s, const char* suffix) {
  size_t n = std::strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

bool has_gguf_magic(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  return in.read(magic, 4) && std::memcmp(magic, "GGUF", 4) == 0;
}

}  // namespace

LoadedModel load_model(const std::string& spec, bool with_weights) {
  namespace fs = std::filesystem;
  if (needle::is_needle_spec(spec)) return needle::load_needle_model(spec, with_weights);
  if (is_synthetic_spec(spec)) return load_synthetic_model(spec, with_weights);
  std::error_code ec;
  if (fs::is_directory(spec, ec)) return load_hf_model(spec);
  if (fs::is_regular_file(spec, ec) && (ends_with(spec, ".gguf") || has_gguf_magic(spec))) return load_gguf_model(spec);
  std::string presets;
  for (const std::string& p : synthetic_presets()) presets += (presets.empty() ? "" : ", ") + p;
  presets += ", needle";
  HI_FAIL(spec << ": not a model directory, .gguf file or synthetic:<preset> (presets: " << presets << ")"
               << (fs::exists(spec, ec) ? "" : " (no such file or directory)"));
}

}  // namespace headinfer
