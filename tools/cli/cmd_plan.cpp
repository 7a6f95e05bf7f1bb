// `headinfer plan`: prints the residency plan for a model, a context and a GPU
// memory budget, without loading weights (a synthetic 8B model costs nothing).
// Also the plan inputs `generate` shares: budget, offload mode, link bandwidth.
#include <cstdio>

#include "backend/backend_factory.hpp"
#include "commands.hpp"
#include "common/units.hpp"
#include "format/model_loader.hpp"
#include "headinfer/error.hpp"
#include "kv/link_bandwidth.hpp"

namespace headinfer::cli {

DType kv_dtype_for(const std::string& name, DType weights) {
  if (name == "auto") return weights == DType::BF16 ? DType::BF16 : DType::F32;
  if (name == "f32") return DType::F32;
  if (name == "bf16") return DType::BF16;
  if (name == "f16") return DType::F16;
  HI_FAIL("--kv-type: unknown type '" << name << "' (expected auto, f32, bf16 or f16)");
}

void add_plan_options(CLI::App& app, PlanOptions& o) {
  app.add_option("--gpu-memory", o.gpu_memory,
                 "device memory budget, e.g. 24GiB (default: what the GPU has free minus a margin; on the "
                 "CPU backend, whose device is host RAM, what it allocates and the pool must fit host RAM)");
  app.add_option("--offload", o.offload, "KV offloading: auto (fill the budget), all, none")->capture_default_str();
  app.add_option("--link-gbs", o.link_gbs, "host->device GB/s (default: measured once, cached under ~/.cache/headinfer)");
}

PlanInputs plan_inputs_for(const LoadedModel& m, Backend& backend, const PlanOptions& o, DType kv_dtype,
                           int64_t context, int chunk) {
  PlanInputs in;
  in.model_name = m.spec;
  in.cfg = m.config;
  in.kv_dtype = kv_dtype;
  in.context = context;
  in.mode = parse_offload_mode(o.offload);
  in.weight_bytes = prepared_weight_bytes(m.weights);
  in.chunk = chunk;
  in.host_available = o.host_memory >= 0 ? o.host_memory : host_memory_available();
  in.speeds = DeviceSpeeds::for_backend(backend.name());
  const bool cpu = backend.name().rfind("cpu", 0) == 0;
  const DeviceMemoryInfo mem = backend.device_memory();
  // Predictions and budgets are what the driver sees: the context and library
  // workspaces already there count.
  if (!cpu) in.device_overhead = mem.driver_total > 0 ? mem.driver_total - mem.driver_free : int64_t{512} << 20;
  // The CPU backend's "device" is host RAM: with no budgets given, what it allocates
  // and the pool must fit the machine together (the weights it uses in place are
  // already the model's).
  if (cpu && o.gpu_memory.empty() && o.host_memory < 0) in.host_backed_weights = in_place_weight_bytes(m.weights);
  if (!o.gpu_memory.empty()) {
    in.gpu_budget = parse_bytes(o.gpu_memory, "--gpu-memory");
    HI_CHECK(in.gpu_budget > 0, "--gpu-memory must be positive");
  } else if (!cpu && mem.driver_free > 0) {
    const int64_t margin = std::max<int64_t>(int64_t{512} << 20, mem.driver_free / 20);
    in.gpu_budget = in.device_overhead + mem.driver_free - margin;
  }
  // Measured (once per machine) only when the plan may offload.
  const bool may_offload = in.mode == OffloadMode::All || (in.mode == OffloadMode::Auto && in.gpu_budget >= 0);
  if (o.link_gbs > 0) in.speeds.link_gbs = o.link_gbs;
  else if (may_offload) in.speeds.link_gbs = link_gbs_cached(backend);
  // Only a budget can make the plan pin part of the pool.
  if (may_offload && in.gpu_budget >= 0 && !cpu) in.speeds.pageable_gbs = pageable_link_gbs_cached(backend);
  return in;
}

Runner add_plan(CLI::App& app) {
  auto* cmd = app.add_subcommand("plan", "print the KV residency plan: chunk, groups, buffers, resident slabs, "
                                         "predicted GPU and host memory and time per decode token");
  struct Options {
    ModelOptions model;
    PlanOptions plan;
    std::string context = "128K", kv_type = "auto", target = "backend", host_memory;
    int chunk_size = 0;
  };
  auto o = std::make_shared<Options>();
  add_model_options(*cmd, o->model);
  add_plan_options(*cmd, o->plan);
  cmd->add_option("--context", o->context, "context to plan for, in tokens (16K, 1M, ...)")->capture_default_str();
  cmd->add_option("--kv-type", o->kv_type, "KV cache type: auto, f32, bf16, f16")->capture_default_str();
  cmd->add_option("--chunk-size", o->chunk_size,
                  "prefill chunk in tokens (0: from the roofline; with every slab resident on a GPU, the largest that "
                  "fits, to 64K)")
      ->capture_default_str();
  cmd->add_option("--for", o->target,
                  "plan for: backend (the --backend device here, link measured) or gpu (the reference H100: "
                  "54 GB/s unless --link-gbs, 512 MiB driver overhead, no host check unless --host-memory)")
      ->capture_default_str();
  cmd->add_option("--host-memory", o->host_memory,
                  "host RAM the KV pool may use (default: MemAvailable here, or the cgroup's headroom, less 1/32 "
                  "of RAM)");
  return [o] {
    LoadedModel m = load_model(o->model.model, /*with_weights=*/false);
    const int64_t context = parse_tokens(o->context, "--context");
    const DType kv = kv_dtype_for(o->kv_type, m.weight_dtype);
    PlanInputs in;
    if (o->target == "gpu") {
      in.model_name = m.spec;
      in.cfg = m.config;
      in.kv_dtype = kv;
      in.context = context;
      in.mode = parse_offload_mode(o->plan.offload);
      in.weight_bytes = prepared_weight_bytes(m.weights);
      in.chunk = o->chunk_size;
      in.device_overhead = int64_t{512} << 20;
      if (!o->plan.gpu_memory.empty()) in.gpu_budget = parse_bytes(o->plan.gpu_memory, "--gpu-memory");
      if (o->plan.link_gbs > 0) in.speeds.link_gbs = o->plan.link_gbs;
    } else {
      HI_CHECK(o->target == "backend", "--for: expected backend or gpu, got '" << o->target << "'");
      auto backend = make_backend(o->model.backend, o->model.threads);
      in = plan_inputs_for(m, *backend, o->plan, kv, context, o->chunk_size);
    }
    if (!o->host_memory.empty()) {
      in.host_available = parse_bytes(o->host_memory, "--host-memory");
      in.host_backed_weights = -1;  // a figure for the pool alone, as in generate and bench
    }
    std::fputs(make_plan(in).to_string().c_str(), stdout);
    return 0;
  };
}

}  // namespace headinfer::cli

namespace headinfer::cli {

Plan apply_plan(const LoadedModel& m, Backend& backend, const PlanOptions& o, int chunk, ExecutorOptions& eo) {
  // Everything the device will hold is decided (or refused) before any of it is allocated.
  const PlanInputs pin = plan_inputs_for(m, backend, o, eo.kv_dtype, eo.capacity, chunk);
  const Plan plan = make_plan(pin);
  if (pin.gpu_budget >= 0) backend.set_device_limit(pin.gpu_budget - pin.device_overhead);
  eo.max_chunk = plan.chunk;
  eo.mlp_chunk = plan.mlp_chunk;
  eo.schedule = plan.schedule;
  if (pin.gpu_budget >= 0 || plan.offloaded_slabs > 0)
    std::fprintf(stderr, "plan: %lld resident + %lld offloaded slabs, chunk %d, buffers %d x %s, predicted GPU %s%s%s\n",
                 static_cast<long long>(plan.resident_slabs), static_cast<long long>(plan.offloaded_slabs), plan.chunk,
                 plan.offloaded_slabs ? plan.schedule.n_buffers : 0, format_bytes(plan.schedule.buffer_bytes).c_str(),
                 format_bytes(plan.gpu_total).c_str(), pin.gpu_budget >= 0 ? " of " : "",
                 pin.gpu_budget >= 0 ? format_bytes(pin.gpu_budget).c_str() : "");
  return plan;
}

}  // namespace headinfer::cli
