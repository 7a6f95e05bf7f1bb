#include <iostream>
#include <map>

#include "commands.hpp"
#include "headinfer/error.hpp"

int main(int argc, char** argv) {
  CLI::App app{"headinfer: exact long-context LLM inference with head-wise KV offloading"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "headinfer 0.1.0");
  std::map<std::string, headinfer::cli::Runner> runners{
      {"bench", headinfer::cli::add_bench(app)},
      {"demo", headinfer::cli::add_demo(app)},
      {"export", headinfer::cli::add_export(app)},
      {"generate", headinfer::cli::add_generate(app)},
      {"info", headinfer::cli::add_info(app)},
      {"plan", headinfer::cli::add_plan(app)},
      {"tokenize", headinfer::cli::add_tokenize(app)},
  };
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    for (auto* sub : app.get_subcommands()) return runners.at(sub->get_name())();
  } catch (const headinfer::Error& e) {
    std::cerr << "headinfer: error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "headinfer: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
