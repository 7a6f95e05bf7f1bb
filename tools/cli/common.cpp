#include <fstream>
#include <sstream>

#include "commands.hpp"
#include "headinfer/error.hpp"

namespace headinfer::cli {

void add_model_options(CLI::App& app, ModelOptions& o) {
  app.add_option("-m,--model", o.model,
                 "model: Hugging Face directory, .gguf file, or synthetic:<preset>[,layers=N]")
      ->capture_default_str();
  app.add_option("--backend", o.backend, "auto, cpu or cuda")->capture_default_str();
  app.add_option("-t,--threads", o.threads, "CPU threads (0: all cores)")->capture_default_str();
}

std::string read_prompt(const std::string& text, const std::string& file, bool allow_none) {
  HI_CHECK(text.empty() || file.empty(), "give the prompt with -p or -f, not both");
  if (!file.empty()) {
    std::ifstream in(file, std::ios::binary);
    HI_CHECK(in, file << ": cannot open the prompt file");
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  HI_CHECK(allow_none || !text.empty(), "no prompt: give -p TEXT or -f FILE");
  return text;
}

}  // namespace headinfer::cli
