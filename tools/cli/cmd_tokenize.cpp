#include <iostream>

#include "commands.hpp"
#include "format/model_loader.hpp"

namespace headinfer::cli {

Runner add_tokenize(CLI::App& app) {
  auto* cmd = app.add_subcommand("tokenize", "print the token ids of a text, space-separated");
  auto o = std::make_shared<ModelOptions>();
  auto text = std::make_shared<std::string>();
  auto file = std::make_shared<std::string>();
  auto no_bos = std::make_shared<bool>(false);
  add_model_options(*cmd, *o);
  cmd->add_option("-p,--prompt", *text, "text to tokenize");
  cmd->add_option("-f,--file", *file, "file whose text to tokenize");
  cmd->add_flag("--no-bos", *no_bos, "do not add the BOS token");
  return [=] {
    const std::string prompt = read_prompt(*text, *file, false);
    LoadedModel model = load_model(o->model);
    auto tok = model.load_tokenizer();
    const auto ids = tok->encode(prompt, !*no_bos);
    for (size_t i = 0; i < ids.size(); ++i) std::cout << (i ? " " : "") << ids[i];
    std::cout << "\n";
    return 0;
  };
}

}  // namespace headinfer::cli
