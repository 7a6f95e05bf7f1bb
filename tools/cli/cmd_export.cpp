// `headinfer export`: writes any model the engine loads (synthetic presets in
// particular) as a Hugging Face directory, so peers such as transformers run the
// very same weights (bench/peers/hf_bench.py, scripts/reference/hf_parity.py).
#include <chrono>
#include <cstdio>

#include "commands.hpp"
#include "common/units.hpp"
#include "format/hf_export.hpp"
#include "format/model_loader.hpp"
#include "headinfer/error.hpp"

namespace headinfer::cli {

Runner add_export(CLI::App& app) {
  auto* cmd = app.add_subcommand("export", "write a model as a Hugging Face directory (config.json + safetensors)");
  struct Options {
    std::string model, out, max_shard = "4GiB";
  };
  auto o = std::make_shared<Options>();
  cmd->add_option("-m,--model", o->model, "model to export: synthetic:<preset>[,layers=N], a .gguf file, an HF directory")
      ->required();
  cmd->add_option("-o,--output", o->out, "output directory (created when missing)")->required();
  cmd->add_option("--max-shard-size", o->max_shard, "largest safetensors file; larger models are sharded")
      ->capture_default_str();
  return [o] {
    HfExportOptions eo;
    eo.max_shard_bytes = parse_bytes(o->max_shard, "--max-shard-size");
    HI_CHECK(eo.max_shard_bytes > 0, "--max-shard-size must be positive");
    // 4GiB means "under 4 GiB": leave room for the header.
    if (eo.max_shard_bytes > (int64_t{1} << 20)) eo.max_shard_bytes -= int64_t{1} << 20;
    const auto t0 = std::chrono::steady_clock::now();
    const LoadedModel m = load_model(o->model);
    const HfExportResult r = export_hf_model(m, o->out, eo);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::fprintf(stderr, "export: %s -> %s: %s in %d file%s (%s), %.1f s\n", o->model.c_str(), o->out.c_str(),
                 format_bytes(r.tensor_bytes).c_str(), r.shards, r.shards == 1 ? "" : "s",
                 dtype_name(m.weight_dtype), s);
    return 0;
  };
}

}  // namespace headinfer::cli
