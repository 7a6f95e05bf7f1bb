#include "backend/cuda/cudnn_attention.hpp"

#include <tuple>

#include "headinfer/error.hpp"

namespace headinfer::cuda {

bool SdpaShape::operator<(const SdpaShape& o) const {
  return std::tie(n_q, n_qh, n_kv_heads, kv_head_stride, n_kv, head_dim, causal, scale, dtype) <
         std::tie(o.n_q, o.n_qh, o.n_kv_heads, o.kv_head_stride, o.n_kv, o.head_dim, o.causal, o.scale, o.dtype);
}

}  // namespace headinfer::cuda

#if HEADINFER_HAVE_CUDNN_FRONTEND

#include <dlfcn.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <unordered_map>

#include <cudnn_frontend.h>

// The frontend, built for dynamic loading, resolves every cuDNN call through this
// handle, so the engine starts (and falls back) on machines without cuDNN.
namespace cudnn_frontend {
void* cudnn_dlhandle = nullptr;
}  // namespace cudnn_frontend

namespace headinfer::cuda {
namespace {

namespace fe = cudnn_frontend;

constexpr int64_t kUidQ = 1, kUidK = 2, kUidV = 3, kUidO = 4, kUidStats = 5;
// Shapes seen in a run are few (chunk x chunk, chunk x block, the last chunk's), but
// an unbounded cache would hold a plan per odd length forever.
constexpr size_t kMaxPlans = 64;

// Opens libcudnn once per process. The frontend also opens a CUDA runtime library
// for a few queries (device properties); this engine links the runtime statically,
// so a shared one must be findable: the default names first, then the toolkit's.
std::string load_cudnn() {
  static std::once_flag once;
  static std::string error;
  std::call_once(once, [] {
    // HEADINFER_CUDNN_LIB names one library (a path, or a name the loader searches),
    // e.g. a newer cuDNN 9 than the system's, from the nvidia-cudnn-cu13 wheel.
    if (const char* lib = std::getenv("HEADINFER_CUDNN_LIB"); lib && *lib) {
      cudnn_frontend::cudnn_dlhandle = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
      if (!cudnn_frontend::cudnn_dlhandle) {
        const char* e = dlerror();
        error = std::string("HEADINFER_CUDNN_LIB=") + lib + " could not be loaded (" + (e ? e : "not found") + ")";
        return;
      }
    }
    for (const char* name : {"libcudnn.so.9", "libcudnn.so"})
      if (!cudnn_frontend::cudnn_dlhandle) cudnn_frontend::cudnn_dlhandle = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!cudnn_frontend::cudnn_dlhandle) {
      const char* e = dlerror();
      error = std::string("libcudnn.so.9 could not be loaded (") + (e ? e : "not found") + ")";
      return;
    }
    if (std::getenv("CUDNN_FRONTEND_CUDART_LIB_NAME")) return;
    for (const char* name : {"libcudart.so.13", "libcudart.so.12"}) {
      if (void* h = dlopen(name, RTLD_NOW | RTLD_LOCAL)) {
        dlclose(h);
        return;
      }
    }
    for (const char* path : {"/usr/local/cuda/lib64/libcudart.so.13", "/usr/local/cuda/lib64/libcudart.so.12"}) {
      if (void* h = dlopen(path, RTLD_NOW | RTLD_LOCAL)) {
        dlclose(h);
        setenv("CUDNN_FRONTEND_CUDART_LIB_NAME", path, 0);
        return;
      }
    }
    error = "no shared CUDA runtime (libcudart.so.13) for the cuDNN frontend; set CUDNN_FRONTEND_CUDART_LIB_NAME";
  });
  return error;
}

struct Plan {
  std::shared_ptr<fe::graph::Graph> graph;
  int64_t index = -1;  // the execution plan run (-1: the heuristics' first choice)
  int64_t workspace = 0;
  bool ok = false;
  std::string error;
};

// HEADINFER_CUDNN_PLAN=MODE:INDEX (e.g. B:2): heuristics mode A or B and which of its
// candidate plans to run, so a benchmark can time the candidates. A fixed choice per
// shape keeps resident and offloaded calls on the same plan, so the same bits
// (timing-based autotuning at run time would not). Default A:0.
struct PlanChoice {
  fe::HeurMode_t mode = fe::HeurMode_t::A;
  int64_t index = 0;
  static PlanChoice from_env() {
    PlanChoice c;
    if (const char* e = std::getenv("HEADINFER_CUDNN_PLAN")) {
      char m = 'A';
      long long i = 0;
      if (std::sscanf(e, "%c:%lld", &m, &i) == 2) {
        c.mode = m == 'B' || m == 'b' ? fe::HeurMode_t::B : fe::HeurMode_t::A;
        c.index = std::max<long long>(0, i);
      }
    }
    return c;
  }
};

class FrontendAttention final : public CudnnAttention {
 public:
  FrontendAttention(cudaStream_t stream, cudnnHandle_t handle) : stream_(stream), handle_(handle) {}
  ~FrontendAttention() override {
    if (workspace_) cudaFree(workspace_);
    fe::detail::destroy_handle(handle_);
  }

  bool supports(const SdpaShape& s) override { return plan(s).ok; }

  void run(const SdpaShape& s, const void* q, const void* k, const void* v, void* o, float* stats) override {
    Plan& p = plan(s);
    HI_CHECK(p.ok, "cudnn attention: no plan for " << s.n_q << " x " << s.n_kv << " keys: " << p.error);
    std::unordered_map<int64_t, void*> pack{{kUidQ, const_cast<void*>(q)},
                                            {kUidK, const_cast<void*>(k)},
                                            {kUidV, const_cast<void*>(v)},
                                            {kUidO, o},
                                            {kUidStats, stats}};
    void* ws = workspace(p.workspace);
    fe::error_t e;
    try {
      e = p.index < 0 ? p.graph->execute(handle_, pack, ws) : p.graph->execute_plan_at_index(handle_, pack, ws, p.index);
    } catch (const std::exception& ex) {
      HI_FAIL("cudnn attention: execute threw: " << ex.what());
    }
    HI_CHECK(e.is_good(), "cudnn attention: execute failed: " << e.get_message());
  }

  std::string version() const override { return fe::detail::get_backend_version_string(); }

 private:
  Plan& plan(const SdpaShape& s) {
    auto it = plans_.find(s);
    if (it != plans_.end()) return it->second;
    if (plans_.size() >= kMaxPlans) plans_.clear();
    return plans_.emplace(s, build(s)).first->second;
  }

  Plan build(const SdpaShape& s) {
    Plan p;
    try {
      auto g = std::make_shared<fe::graph::Graph>();
      const auto io = s.dtype == DType::BF16 ? fe::DataType_t::BFLOAT16 : fe::DataType_t::HALF;
      g->set_io_data_type(io)
          .set_intermediate_data_type(fe::DataType_t::FLOAT)
          .set_compute_data_type(fe::DataType_t::FLOAT);
      const int64_t HKV = s.n_kv_heads, H = HKV * s.n_qh, S = s.n_q, D = s.head_dim, N = s.n_kv;
      const int64_t kvs = HKV > 1 ? s.kv_head_stride : N * D;
      // Rows of Q and O are (token, head): the layout the engine's activations have.
      const std::vector<int64_t> q_dim{1, H, S, D}, q_stride{S * H * D, D, H * D, 1};
      const std::vector<int64_t> kv_dim{1, HKV, N, D}, kv_stride{HKV * kvs, kvs, D, 1};
      auto Q = g->tensor(fe::graph::Tensor_attributes().set_name("Q").set_uid(kUidQ).set_dim(q_dim).set_stride(q_stride));
      auto K = g->tensor(fe::graph::Tensor_attributes().set_name("K").set_uid(kUidK).set_dim(kv_dim).set_stride(kv_stride));
      auto V = g->tensor(fe::graph::Tensor_attributes().set_name("V").set_uid(kUidV).set_dim(kv_dim).set_stride(kv_stride));
      auto attrs = fe::graph::SDPA_attributes().set_name("sdpa").set_generate_stats(true).set_attn_scale(s.scale);
      if (s.causal) attrs.set_causal_mask(true);
      auto [O, Stats] = g->sdpa(Q, K, V, attrs);
      O->set_output(true).set_uid(kUidO).set_dim(q_dim).set_stride(q_stride);
      Stats->set_output(true)
          .set_uid(kUidStats)
          .set_data_type(fe::DataType_t::FLOAT)
          .set_dim({1, H, S, 1})
          .set_stride({H * S, S, 1, 1});
      auto check = [&](fe::error_t e, const char* step) {
        if (e.is_good()) return true;
        p.error = std::string(step) + ": " + e.get_message();
        return false;
      };
      if (!check(g->validate(), "validate")) return p;
      if (!check(g->build_operation_graph(handle_), "build_operation_graph")) return p;
      if (!check(g->create_execution_plans({choice_.mode}), "create_execution_plans")) return p;
      if (!check(g->check_support(handle_), "check_support")) return p;
      if (choice_.index == 0) {
        if (!check(g->build_plans(handle_), "build_plans")) return p;
        if (!check(g->get_workspace_size(p.workspace), "get_workspace_size")) return p;
      } else {
        if (!check(g->build_plans(handle_, fe::BuildPlanPolicy_t::ALL), "build_plans (all)")) return p;
        const int64_t n = g->get_execution_plan_count();
        if (n <= 0) {
          p.error = "no execution plan built";
          return p;
        }
        // Past the last candidate: the last one (the choice is printed by the benchmark).
        p.index = std::min<int64_t>(choice_.index, n - 1);
        if (!check(g->get_workspace_size_plan_at_index(p.index, p.workspace), "get_workspace_size_plan_at_index"))
          return p;
      }
      p.graph = std::move(g);
      p.ok = true;
    } catch (const std::exception& ex) {
      p.error = ex.what();
    }
    return p;
  }

  void* workspace(int64_t bytes) {
    if (bytes <= 0) return nullptr;
    if (static_cast<size_t>(bytes) > workspace_bytes_) {
      if (workspace_) {
        cudaStreamSynchronize(stream_);
        cudaFree(workspace_);
        workspace_ = nullptr;
        workspace_bytes_ = 0;
      }
      cudaError_t e = cudaMalloc(&workspace_, static_cast<size_t>(bytes));
      HI_CHECK(e == cudaSuccess, "cudnn attention: workspace of " << bytes << " bytes: " << cudaGetErrorString(e));
      workspace_bytes_ = static_cast<size_t>(bytes);
    }
    return workspace_;
  }

  cudaStream_t stream_;
  cudnnHandle_t handle_;
  const PlanChoice choice_ = PlanChoice::from_env();
  std::map<SdpaShape, Plan> plans_;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
};

}  // namespace

std::unique_ptr<CudnnAttention> make_cudnn_attention(cudaStream_t stream, std::string& why) {
  if (const char* e = std::getenv("HEADINFER_CUDNN"); e && std::strcmp(e, "0") == 0) {
    why = "disabled by HEADINFER_CUDNN=0";
    return nullptr;
  }
  why = load_cudnn();
  if (!why.empty()) return nullptr;
  try {
    if (fe::detail::get_backend_version() < 90000) {
      why = "cuDNN " + fe::detail::get_backend_version_string() + " is older than 9.0";
      return nullptr;
    }
    cudnnHandle_t h = nullptr;
    if (fe::detail::create_handle(&h) != CUDNN_STATUS_SUCCESS) {
      why = "cudnnCreate failed";
      return nullptr;
    }
    if (fe::detail::set_stream(h, stream) != CUDNN_STATUS_SUCCESS) {
      fe::detail::destroy_handle(h);
      why = "cudnnSetStream failed";
      return nullptr;
    }
    return std::make_unique<FrontendAttention>(stream, h);
  } catch (const std::exception& ex) {
    why = std::string("cuDNN frontend: ") + ex.what();
    return nullptr;
  }
}

}  // namespace headinfer::cuda

#else  // built without the cuDNN frontend headers

namespace headinfer::cuda {

std::unique_ptr<CudnnAttention> make_cudnn_attention(cudaStream_t, std::string& why) {
  why = "built without the cuDNN frontend (pip install nvidia-cudnn-frontend, then reconfigure)";
  return nullptr;
}

}  // namespace headinfer::cuda

#endif
