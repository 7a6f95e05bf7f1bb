// The headinfer command line: one file per subcommand, sharing the options that
// pick and load a model.
#pragma once

#include <CLI/CLI.hpp>

#include <string>

namespace headinfer::cli {

struct ModelOptions {
  std::string model = "synthetic:tiny-gqa";
  std::string backend = "auto";
  int threads = 0;
};

void add_model_options(CLI::App& app, ModelOptions& o);

// Each registers a subcommand and returns the function that runs it.
using Runner = std::function<int()>;
Runner add_demo(CLI::App& app);
Runner add_generate(CLI::App& app);
Runner add_info(CLI::App& app);
Runner add_tokenize(CLI::App& app);

// Reads -p / -f into a string; exactly one must be given (unless allow_none).
std::string read_prompt(const std::string& text, const std::string& file, bool allow_none);

}  // namespace headinfer::cli
