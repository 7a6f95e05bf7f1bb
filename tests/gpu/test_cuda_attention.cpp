// Parity of the CUDA attention kernels (tensor-core prefill, memory-bound split-KV
// decode for few rows, CUDA-core generic path, split combine, piece batching) against a double-precision
// host reference and the CPU backend, over GQA group sizes, head dims, KV dtypes, piece layouts with
// position gaps, tile edges, causal and non-causal, fully masked rows and long KV.
#include <gtest/gtest.h>

// The CPU-only build also compiles tests/gpu: without CUDA this file is one skipped test.
#ifdef HEADINFER_HAVE_CUDA

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "backend/cuda/kernels.hpp"
#include "gpu/cuda_test_util.hpp"

namespace headinfer::test {
namespace {

struct PieceSpec {
  int64_t n_tokens;
  int64_t pos0;
  int elem_offset = 0;  // start the piece this many elements into its buffer (alignment tests)
};

struct AttnCase {
  std::string name;
  int n_q, n_qh, head_dim;
  DType kv;
  bool causal;
  int64_t q_pos0;
  std::vector<PieceSpec> pieces;
  float q_sigma = 1.f;
};

std::ostream& operator<<(std::ostream& os, const AttnCase& c) { return os << c.name; }

// KV of a case: host values (already rounded to the KV dtype), their encoded bytes
// (for the CPU backend) and device copies.
struct KvData {
  std::vector<std::vector<float>> k, v;
  std::vector<std::vector<uint8_t>> host_bytes;
  std::vector<DevBuf> bufs;
  std::vector<KvPiece> pieces;      // device
  std::vector<KvPiece> cpu_pieces;  // host
};

KvData make_kv(const AttnCase& c, std::mt19937& rng) {
  KvData kv;
  const size_t esize = dtype_bytes(c.kv, 1);
  for (const PieceSpec& s : c.pieces) {
    const size_t n = static_cast<size_t>(s.n_tokens) * c.head_dim;
    std::vector<float> k = randn(n, rng), v = randn(n, rng);
    for (auto& x : k) x = round_to(c.kv, x);
    for (auto& x : v) x = round_to(c.kv, x);
    KvPiece piece, cpu_piece;
    piece.n_tokens = cpu_piece.n_tokens = s.n_tokens;
    piece.pos0 = cpu_piece.pos0 = s.pos0;
    for (int which = 0; which < 2; ++which) {
      std::vector<uint8_t> bytes = encode(c.kv, which ? v : k);
      DevBuf b(bytes.size() + s.elem_offset * esize + 16);
      auto* dst = static_cast<uint8_t*>(b.get()) + s.elem_offset * esize;
      if (!bytes.empty()) gpu().upload(dst, bytes.data(), bytes.size());
      (which ? piece.v : piece.k) = dst;
      kv.bufs.push_back(std::move(b));
      kv.host_bytes.push_back(std::move(bytes));
      (which ? cpu_piece.v : cpu_piece.k) = kv.host_bytes.back().data();
    }
    kv.cpu_pieces.push_back(cpu_piece);
    kv.k.push_back(std::move(k));
    kv.v.push_back(std::move(v));
    kv.pieces.push_back(piece);
  }
  return kv;
}

// Reference over the pieces listed in `use` (indices into kv); out is [n_q][n_qh * hd].
void reference(const AttnCase& c, const std::vector<float>& q, int64_t q_stride, float scale, const KvData& kv,
               const std::vector<int>& use, std::vector<double>& out, std::vector<double>& lse) {
  const int hd = c.head_dim;
  out.assign(static_cast<size_t>(c.n_q) * c.n_qh * hd, 0.0);
  lse.assign(static_cast<size_t>(c.n_q) * c.n_qh, -INFINITY);
  std::vector<double> s, acc(hd);
  for (int t = 0; t < c.n_q; ++t) {
    const int64_t qpos = c.q_pos0 + t;
    for (int h = 0; h < c.n_qh; ++h) {
      const float* qr = &q[t * q_stride + h * hd];
      double m = -INFINITY;
      s.clear();
      for (int pi : use) {
        const PieceSpec& ps = c.pieces[pi];
        for (int64_t j = 0; j < ps.n_tokens; ++j) {
          double d = -INFINITY;
          if (!c.causal || ps.pos0 + j <= qpos) {
            d = 0;
            for (int e = 0; e < hd; ++e) d += double(qr[e]) * kv.k[pi][j * hd + e];
            d *= scale;
          }
          s.push_back(d);
          m = std::max(m, d);
        }
      }
      if (m == -INFINITY) continue;
      std::fill(acc.begin(), acc.end(), 0.0);
      double l = 0;
      size_t idx = 0;
      for (int pi : use)
        for (int64_t j = 0; j < c.pieces[pi].n_tokens; ++j, ++idx) {
          if (s[idx] == -INFINITY) continue;
          const double p = std::exp(s[idx] - m);
          l += p;
          for (int e = 0; e < hd; ++e) acc[e] += p * kv.v[pi][j * hd + e];
        }
      for (int e = 0; e < hd; ++e) out[(static_cast<size_t>(t) * c.n_qh + h) * hd + e] = acc[e] / l;
      lse[t * c.n_qh + h] = m + std::log(l);
    }
  }
}

bool uses_tensor_cores(const AttnCase& c) {
  if (const char* e = std::getenv("HEADINFER_CUDA_ATTN_PATH"); e && std::string(e) == "simt") return false;
  bool aligned = true;
  for (const auto& p : c.pieces) aligned = aligned && (p.elem_offset * dtype_bytes(c.kv, 1)) % 16 == 0;
  return cuda::attention_mma_supported(c.kv, c.head_dim) && aligned && c.n_q * c.n_qh > cuda::kSimtRows;
}

// Few rows with BF16/F16 KV: the tensor-core decode kernel (unless
// HEADINFER_CUDA_ATTN_DECODE=simt or the CUDA-core path is forced).
bool uses_decode_tensor_cores(const AttnCase& c) {
  if (const char* e = std::getenv("HEADINFER_CUDA_ATTN_PATH"); e && std::string(e) == "simt") return false;
  if (const char* e = std::getenv("HEADINFER_CUDA_ATTN_DECODE"); e && std::string(e) == "simt") return false;
  bool aligned = true;
  for (const auto& p : c.pieces) aligned = aligned && (p.elem_offset * dtype_bytes(c.kv, 1)) % 16 == 0;
  return cuda::attention_mma_supported(c.kv, c.head_dim) && aligned && c.n_q * c.n_qh <= cuda::kSimtRows;
}

// Output tolerance, max|err| / max|ref|: the tensor-core path rounds q and P to the KV
// dtype; the tensor-core decode kernel multiplies q and P as two parts each (about 16
// mantissa bits: a dropped low part shows as ~4e-3); the CUDA-core path computes in
// f32 from the stored KV values.
double out_tol(const AttnCase& c) {
  if (uses_tensor_cores(c)) return c.kv == DType::BF16 ? 1e-2 : 5e-3;
  if (uses_decode_tensor_cores(c)) return 1e-4;
  return c.kv == DType::F32 ? 1e-5 : 2e-5;
}
double lse_tol(const AttnCase& c) {  // absolute
  if (uses_tensor_cores(c)) return c.kv == DType::BF16 ? 2e-2 : 5e-3;
  return 1e-4;
}

struct GpuResult {
  std::vector<float> out;  // [n_q][n_qh * hd]
  std::vector<float> lse;
  size_t pad_written = 0;  // padding columns of out that lost their NaN poison
};

// A backend made with one debug knob set (read when a backend is made), the
// environment restored after; buffers of gpu() are valid in it (same device and
// context).
std::unique_ptr<Backend> gpu_with_env(const char* name, const char* value) {
  const char* old = std::getenv(name);
  const std::string saved = old ? old : "";
  setenv(name, value, 1);
  auto be = make_cuda_backend(0);
  if (old)
    setenv(name, saved.c_str(), 1);
  else
    unsetenv(name);
  return be;
}

// A backend whose tensor-core attention uses another block shape
// (HEADINFER_CUDA_ATTN_WARPS=shape).
std::unique_ptr<Backend> gpu_with_block_shape(const char* shape) {
  return gpu_with_env("HEADINFER_CUDA_ATTN_WARPS", shape);
}

// 8 warps of 16 rows (128-row blocks).
Backend& gpu_8warps() {
  static std::unique_ptr<Backend> b = gpu_with_block_shape("8");
  return *b;
}

// 4 warps of 32 rows (two m-tiles per warp, Q in shared memory; 128-row blocks).
Backend& gpu_wide() {
  static std::unique_ptr<Backend> b = gpu_with_block_shape("4x2");
  return *b;
}

// Few rows with BF16/F16 KV on the CUDA-core decode kernel (f32 math) instead of the
// tensor-core one.
Backend& gpu_decode_simt() {
  static std::unique_ptr<Backend> b = gpu_with_env("HEADINFER_CUDA_ATTN_DECODE", "simt");
  return *b;
}

// The tensor-core decode kernel with the keys on the MMA's M side (8-row tiles) for
// every call it takes (on), also those of more than 8 rows, or for none (off): by
// default it takes the calls of at most 8 rows.
Backend& gpu_decode_keys_m(bool on) {
  static std::unique_ptr<Backend> yes = gpu_with_env("HEADINFER_CUDA_DECODE_KEYS_M", "1");
  static std::unique_ptr<Backend> no = gpu_with_env("HEADINFER_CUDA_DECODE_KEYS_M", "0");
  return on ? *yes : *no;
}

// Hopper's warpgroup-MMA kernel in blocks of one and of two warpgroups (64 and 128
// rows); null where the device is not compute capability 9.0.
Backend* gpu_warpgroup(int groups) {
  static std::unique_ptr<Backend> one = headinfer::cuda::attention_wgmma_available() ? gpu_with_block_shape("wg") : nullptr;
  static std::unique_ptr<Backend> two = headinfer::cuda::attention_wgmma_available() ? gpu_with_block_shape("wg2") : nullptr;
  return groups == 2 ? two.get() : one.get();
}

GpuResult run_attention(const AttnCase& c, const DevBuf& dq, int64_t q_stride, float scale,
                        const std::vector<KvPiece>& pieces, Backend& be = gpu()) {
  const int row = c.n_qh * c.head_dim;
  const int64_t out_stride = row + 24;
  DevBuf out = poisoned(static_cast<size_t>(c.n_q) * out_stride);
  DevBuf lse = poisoned(static_cast<size_t>(c.n_q) * c.n_qh);
  AttnArgs a;
  a.q = dq.f();
  a.q_stride = q_stride;
  a.n_q = c.n_q;
  a.n_qh = c.n_qh;
  a.head_dim = c.head_dim;
  a.q_pos0 = c.q_pos0;
  a.causal = c.causal;
  a.scale = scale;
  a.kv_dtype = c.kv;
  a.pieces = pieces;
  a.out = out.f();
  a.out_stride = out_stride;
  a.lse = lse.f();
  be.attention(a);
  be.synchronize();
  std::vector<float> full = to_host(out, static_cast<size_t>(c.n_q) * out_stride);
  GpuResult r;
  r.out.resize(static_cast<size_t>(c.n_q) * row);
  for (int t = 0; t < c.n_q; ++t)
    for (int64_t i = 0; i < out_stride; ++i) {
      if (i < row)
        r.out[static_cast<size_t>(t) * row + i] = full[t * out_stride + i];
      else
        r.pad_written += !std::isnan(full[t * out_stride + i]);
    }
  r.lse = to_host(lse, static_cast<size_t>(c.n_q) * c.n_qh);
  return r;
}

// q rows of all heads of the group plus a garbage tail the kernels must not read.
std::vector<float> make_q(const AttnCase& c, int64_t q_stride, std::mt19937& rng) {
  std::vector<float> q = randn(static_cast<size_t>(c.n_q) * q_stride, rng, c.q_sigma);
  for (int t = 0; t < c.n_q; ++t)
    for (int64_t i = static_cast<int64_t>(c.n_qh) * c.head_dim; i < q_stride; ++i) q[t * q_stride + i] = 1e30f;
  return q;
}

// "token t, head h, dim d (position p, k of n keys visible)" of the largest error.
std::string worst_row(const AttnCase& c, const std::vector<float>& got, const std::vector<double>& ref) {
  size_t worst = 0;
  double err = -1;
  for (size_t i = 0; i < got.size(); ++i) {
    const double e = std::isnan(got[i]) ? INFINITY : std::abs(got[i] - ref[i]);
    if (e > err) {
      err = e;
      worst = i;
    }
  }
  const int hd = c.head_dim;
  const int64_t t = static_cast<int64_t>(worst / (static_cast<size_t>(c.n_qh) * hd));
  const int64_t h = static_cast<int64_t>(worst / hd % c.n_qh), d = static_cast<int64_t>(worst % hd);
  int64_t visible = 0, total = 0;
  for (const auto& p : c.pieces) {
    total += p.n_tokens;
    for (int64_t j = 0; j < p.n_tokens; ++j) visible += !c.causal || p.pos0 + j <= c.q_pos0 + t;
  }
  std::ostringstream os;
  os << "token " << t << ", head " << h << ", dim " << d << " (position " << c.q_pos0 + t << ", " << visible << " of "
     << total << " keys visible)";
  return os.str();
}

class CudaAttention : public ::testing::TestWithParam<AttnCase> {};

TEST_P(CudaAttention, MatchesReference) {
  HI_REQUIRE_CUDA();
  const AttnCase& c = GetParam();
  std::mt19937 rng(1234);
  const int64_t q_stride = static_cast<int64_t>(c.n_qh) * c.head_dim + 8;
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  std::vector<float> q = make_q(c, q_stride, rng);
  KvData kv = make_kv(c, rng);
  DevBuf dq = to_device(q);
  std::vector<int> all(c.pieces.size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int>(i);
  std::vector<double> ref_out, ref_lse;
  reference(c, q, q_stride, scale, kv, all, ref_out, ref_lse);

  GpuResult g = run_attention(c, dq, q_stride, scale, kv.pieces);
  SCOPED_TRACE(std::string("path: ") +
               (uses_tensor_cores(c)          ? "tensor-core"
                : uses_decode_tensor_cores(c) ? "tensor-core decode"
                                              : "cuda-core") +
               " (HEADINFER_CUDA_ATTN_PATH=simt forces the CUDA-core kernel, HEADINFER_CUDA_ATTN_SPLITS=1 "
               "disables split-KV)");
  EXPECT_TRUE(close(g.out, ref_out, out_tol(c))) << "attention output; worst row: " << worst_row(c, g.out, ref_out);
  EXPECT_TRUE(close(g.lse, ref_lse, lse_tol(c), /*abs_mode=*/true)) << "log-sum-exp";
  EXPECT_EQ(g.pad_written, 0u) << "values written past n_qh * head_dim in an output row";

  {  // the CPU backend on the same inputs
    const int row = c.n_qh * c.head_dim;
    std::vector<float> cpu_out(static_cast<size_t>(c.n_q) * row, kNaN), cpu_lse(static_cast<size_t>(c.n_q) * c.n_qh, kNaN);
    AttnArgs a;
    a.q = q.data();
    a.q_stride = q_stride;
    a.n_q = c.n_q;
    a.n_qh = c.n_qh;
    a.head_dim = c.head_dim;
    a.q_pos0 = c.q_pos0;
    a.causal = c.causal;
    a.scale = scale;
    a.kv_dtype = c.kv;
    a.pieces = kv.cpu_pieces;
    a.out = cpu_out.data();
    a.out_stride = row;
    a.lse = cpu_lse.data();
    cpu().attention(a);
    // The CPU backend sums in f32 over up to 70K keys, so it is itself ~1e-5 off the
    // exact result: compare to it no tighter than 1e-4 (semantic slips are far larger).
    EXPECT_TRUE(close(g.out, widen(cpu_out), std::max(out_tol(c), 1e-4)))
        << "vs CPU backend: output; worst row: " << worst_row(c, g.out, widen(cpu_out));
    EXPECT_TRUE(close(g.lse, widen(cpu_lse), std::max(lse_tol(c), 1e-4), true)) << "vs CPU backend: log-sum-exp";
  }

  if (uses_tensor_cores(c)) {  // the other tensor-core block shapes
    GpuResult g8 = run_attention(c, dq, q_stride, scale, kv.pieces, gpu_8warps());
    EXPECT_TRUE(close(g8.out, ref_out, out_tol(c))) << "8-warp blocks: output; worst row: "
                                                    << worst_row(c, g8.out, ref_out);
    EXPECT_TRUE(close(g8.lse, ref_lse, lse_tol(c), true)) << "8-warp blocks: log-sum-exp";
    GpuResult gw = run_attention(c, dq, q_stride, scale, kv.pieces, gpu_wide());
    EXPECT_TRUE(close(gw.out, ref_out, out_tol(c))) << "4 x 32-row blocks: output; worst row: "
                                                    << worst_row(c, gw.out, ref_out);
    EXPECT_TRUE(close(gw.lse, ref_lse, lse_tol(c), true)) << "4 x 32-row blocks: log-sum-exp";
    EXPECT_EQ(gw.pad_written, 0u) << "4 x 32-row blocks wrote padding columns";
    for (int groups : {1, 2}) {
      Backend* wg = gpu_warpgroup(groups);
      if (!wg) continue;  // not compute capability 9.0: WarpgroupKernelOnHopper says so
      GpuResult gg = run_attention(c, dq, q_stride, scale, kv.pieces, *wg);
      const std::string name = "warpgroup MMA, " + std::to_string(groups) + " warpgroup(s) a block: ";
      EXPECT_TRUE(close(gg.out, ref_out, out_tol(c))) << name << "output; worst row: " << worst_row(c, gg.out, ref_out);
      EXPECT_TRUE(close(gg.lse, ref_lse, lse_tol(c), true)) << name << "log-sum-exp";
      EXPECT_EQ(gg.pad_written, 0u) << name << "wrote padding columns";
    }
  }

  if (uses_decode_tensor_cores(c)) {  // the CUDA-core decode kernel, f32 throughout
    GpuResult gs = run_attention(c, dq, q_stride, scale, kv.pieces, gpu_decode_simt());
    EXPECT_TRUE(close(gs.out, ref_out, 2e-5)) << "CUDA-core decode kernel: output; worst row: "
                                              << worst_row(c, gs.out, ref_out);
    EXPECT_TRUE(close(gs.lse, ref_lse, 1e-4, true)) << "CUDA-core decode kernel: log-sum-exp";
    EXPECT_EQ(gs.pad_written, 0u) << "CUDA-core decode kernel wrote padding columns";
    for (bool on : {true, false}) {
      GpuResult gk = run_attention(c, dq, q_stride, scale, kv.pieces, gpu_decode_keys_m(on));
      const std::string name = on ? "decode kernel, keys on M: " : "decode kernel, rows on M: ";
      EXPECT_TRUE(close(gk.out, ref_out, out_tol(c))) << name << "output; worst row: " << worst_row(c, gk.out, ref_out);
      EXPECT_TRUE(close(gk.lse, ref_lse, lse_tol(c), true)) << name << "log-sum-exp";
      EXPECT_EQ(gk.pad_written, 0u) << name << "wrote padding columns";
    }
  }

  // Split the pieces in two, attend to each half, merge by LSE: same result.
  if (c.pieces.size() >= 2) {
    const size_t half = c.pieces.size() / 2;
    std::vector<KvPiece> pa(kv.pieces.begin(), kv.pieces.begin() + half), pb(kv.pieces.begin() + half, kv.pieces.end());
    const int row = c.n_qh * c.head_dim;
    GpuResult ga = run_attention(c, dq, q_stride, scale, pa), gb = run_attention(c, dq, q_stride, scale, pb);
    DevBuf oa = to_device(ga.out), ob = to_device(gb.out), la = to_device(ga.lse), lb = to_device(gb.lse);
    gpu().merge_attention(oa.f(), la.f(), ob.f(), lb.f(), c.n_q, c.n_qh, c.head_dim, row, row);
    EXPECT_TRUE(close(to_host(oa, ga.out.size()), ref_out, out_tol(c))) << "merge of two halves: output";
    EXPECT_TRUE(close(to_host(la, ga.lse.size()), ref_lse, lse_tol(c), true)) << "merge of two halves: lse";
  }
}

std::vector<PieceSpec> many_pieces(int n, int64_t len, int64_t step) {
  std::vector<PieceSpec> v;
  for (int i = 0; i < n; ++i) v.push_back({len, i * step});
  return v;
}

const DType BF = DType::BF16, F16 = DType::F16, F32 = DType::F32;

const AttnCase kCases[] = {
    // Tensor-core prefill (BF16 / F16, head_dim 64 / 128, more than 32 rows).
    {"prefill_bf16_hd128_gqa4_self", 200, 4, 128, BF, true, 0, {{200, 0}}},
    {"prefill_bf16_hd64_gqa1_odd", 129, 1, 64, BF, true, 0, {{129, 0}}},
    {"prefill_bf16_hd128_gqa8_gaps", 77, 8, 128, BF, true, 1000, {{300, 0}, {450, 500}, {77, 1000}}},
    {"prefill_f16_hd128_gqa4", 65, 4, 128, F16, true, 192, {{257, 0}}},
    {"prefill_f16_hd64_gqa4_noncausal", 50, 4, 64, F16, false, 0, {{31, 0}, {97, 2000}}},
    {"prefill_bf16_hd128_noncausal", 50, 4, 128, BF, false, 0, {{31, 0}, {97, 2000}}},
    {"prefill_bf16_hd128_gqa32", 33, 32, 128, BF, true, 500, {{533, 0}}},
    {"prefill_bf16_tile_edges", 127, 4, 128, BF, true, 193, {{63, 0}, {64, 63}, {65, 127}, {1, 192}, {127, 193}}},
    {"prefill_bf16_split_keys_8k", 256, 4, 128, BF, true, 7936, {{8192, 0}}},
    {"prefill_bf16_peaked_logits", 100, 4, 128, BF, true, 0, {{100, 0}}, 2.f},
    {"prefill_bf16_many_pieces", 64, 4, 128, BF, true, 2900, many_pieces(40, 37, 70)},
    {"prefill_bf16_masked_rows", 30, 4, 128, BF, true, 0, {{50, 10}}},
    {"prefill_bf16_empty_pieces_skipped", 40, 4, 128, BF, true, 10, {{0, 0}, {11, 0}, {0, 5}}},
    {"prefill_bf16_no_keys", 33, 4, 128, BF, true, 0, {}},
    // cuDNN fused attention where it is present (>= 256 queries, every piece before the
    // chunk or the chunk itself); own kernels otherwise, with the same tolerances.
    {"cudnn_bf16_hd128_gqa4_chunk_after_prefix", 512, 4, 128, BF, true, 1024, {{1024, 0}, {512, 1024}}},
    {"cudnn_bf16_hd64_gqa8_self", 300, 8, 64, BF, true, 0, {{300, 0}}},
    {"cudnn_f16_hd128_gqa1_prefix", 256, 1, 128, F16, true, 4096, {{4096, 0}, {256, 4096}}},
    {"cudnn_bf16_hd128_noncausal", 256, 4, 128, BF, false, 0, {{100, 0}, {333, 5000}}},
    {"cudnn_bf16_three_pieces_gaps", 260, 4, 128, BF, true, 9000, {{700, 0}, {1300, 2000}, {260, 9000}}},
    {"cudnn_declined_partial_overlap", 300, 4, 128, BF, true, 100, {{350, 0}}},
    // CUDA-core path: F32 KV, unaligned pieces, head dims without a tensor-core kernel.
    {"prefill_bf16_unaligned_fallback", 40, 4, 128, BF, true, 100, {{140, 0, 4}}},
    {"prefill_f32_hd128_gqa4", 100, 4, 128, F32, true, 0, {{100, 0}}},
    {"prefill_f32_hd64_gqa8_gaps", 37, 8, 64, F32, true, 90, {{40, 0}, {13, 77}, {37, 90}}},
    {"prefill_f32_masked_rows", 30, 4, 128, F32, true, 0, {{50, 10}}},
    {"generic_hd96_bf16", 40, 2, 96, BF, true, 10, {{50, 0}}},
    {"generic_hd80_f16", 21, 4, 80, F16, true, 0, {{21, 0}}},
    {"generic_hd32_f32_noncausal", 70, 3, 32, F32, false, 0, {{45, 0}}},
    {"generic_hd256_bf16", 9, 4, 256, BF, true, 300, {{309, 0}}},
    {"generic_hd72_bf16_gqa7", 5, 7, 72, BF, true, 60, {{65, 0}}},
    {"generic_hd100_bf16_unaligned_rows", 6, 4, 100, BF, true, 40, {{46, 0, 3}}},
    // Split-KV decode.
    {"decode_bf16_hd128_gqa4_70k", 1, 4, 128, BF, true, 70000, {{70000, 0}}},
    {"decode_bf16_hd128_gqa32_pieces", 1, 32, 128, BF, true, 50003, {{20000, 0}, {15000, 30000}, {3, 50000}}},
    {"decode_f32_hd64_gqa8", 1, 8, 64, F32, true, 5000, {{5001, 0}}},
    {"decode_f16_hd128_gqa1", 1, 1, 128, F16, true, 4096, {{4097, 0}}},
    {"decode_bf16_hd64_gqa8_nq4", 4, 8, 64, BF, true, 2998, {{3000, 0}}},
    {"decode_bf16_future_keys_masked", 1, 4, 128, BF, true, 1000, {{2000, 0}}},
    {"decode_bf16_peaked_logits", 1, 4, 128, BF, true, 9000, {{9001, 0}}, 3.f},
    {"decode_bf16_many_pieces", 1, 8, 128, BF, true, 2900, many_pieces(40, 37, 70)},
    {"decode_bf16_noncausal", 2, 4, 128, BF, false, 0, {{1000, 5000}, {17, 0}}},
    {"decode_bf16_hd128_gqa2", 1, 2, 128, BF, true, 3000, {{3001, 0}}},
    {"decode_f32_hd128_gqa4", 1, 4, 128, F32, true, 9000, {{9001, 0}}},
    {"decode_f16_hd64_all_masked", 1, 4, 64, F16, true, 5, {{20, 10}}},
    {"decode_bf16_unaligned_fallback", 1, 4, 128, BF, true, 500, {{501, 0, 4}}},
    {"decode_bf16_odd_split_edges", 1, 4, 128, BF, true, 33000, {{12345, 0}, {7, 20000}, {999, 30000}}},
    // Small chunks (<= 32 rows) go to the decode kernel in row groups of up to 8.
    {"chunk_bf16_hd128_gqa4_nq5", 5, 4, 128, BF, true, 4000, {{2000, 0}, {2005, 2000}}},
    {"chunk_bf16_hd64_gqa1_nq3", 3, 1, 64, BF, true, 130, {{133, 0}}},
    {"generic_hd30_f32_split_combine", 3, 2, 30, F32, true, 5000, {{5003, 0}}},
};

INSTANTIATE_TEST_SUITE_P(Cases, CudaAttention, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<AttnCase>& i) { return i.param.name; });

// Calls queued back to back with no synchronisation in between (as the executor does,
// one per KV head): each reuses the split scratch of the one before, and the decode
// and combine kernels may overlap their neighbours (programmatic launch, on by default).
// A backend with cuDNN off (own kernels only); buffers of gpu() are valid in it.
Backend& gpu_own() {
  static std::unique_ptr<Backend> b = make_cuda_backend_with_env("HEADINFER_CUDA_ATTN_PATH", "own");
  return *b;
}

// Several KV heads in one call (8 KV heads x 4 query heads, a prefix and the chunk,
// as the engine's resident slabs give them) against one call per head and the CPU
// backend. On own kernels the two are the same work and must agree bit for bit; on
// cuDNN one batched call may pick another engine than the per-head calls, so they
// must agree to BF16 tolerance (bit equality is reported).
// A chunk of n_q queries at position `prefix` over H KV heads (GQA qpk, BF16 KV, K and V
// of head j kv_stride elements after head j - 1's): pieces the prefix block and the
// chunk itself right after it, rows of all heads side by side.
struct HeadsCall {
  int H, qpk, hd, n_q;
  int64_t prefix, kv_stride, lse_head_stride;
  int64_t q_w() const { return int64_t{H} * qpk * hd; }
  AttnArgs args(const float* q, const void* k, const void* v, float* out, float* lse) const {
    AttnArgs a;
    a.q = q;
    a.q_stride = q_w();
    a.n_q = n_q;
    a.n_qh = qpk;
    a.head_dim = hd;
    a.q_pos0 = prefix;
    a.scale = 1.0f / std::sqrt(float(hd));
    a.kv_dtype = DType::BF16;
    const auto* kc = static_cast<const uint8_t*>(k);
    const auto* vc = static_cast<const uint8_t*>(v);
    a.pieces = {KvPiece{kc, vc, prefix, 0, kv_stride},
                KvPiece{kc + prefix * hd * 2, vc + prefix * hd * 2, n_q, prefix, kv_stride}};
    a.out = out;
    a.out_stride = q_w();
    a.lse = lse;
    a.n_kv_heads = H;
    a.lse_head_stride = lse_head_stride;
    return a;
  }
};

TEST(CudaAttentionHeads, SeveralKvHeadsInOneCall) {
  HI_REQUIRE_CUDA();
  const int H = 8, qpk = 4, hd = 128, n_q = 512;
  const int64_t prefix = 1024, cap = prefix + n_q + 64, kv_stride = cap * hd, lse_stride = n_q * qpk + 32;
  const int64_t q_w = int64_t{H} * qpk * hd;
  std::mt19937 rng(99);
  std::vector<float> q = randn(static_cast<size_t>(n_q) * q_w, rng);
  std::vector<float> k = randn(static_cast<size_t>(H) * kv_stride, rng), v = randn(k.size(), rng);
  for (auto& x : k) x = round_to(DType::BF16, x);
  for (auto& x : v) x = round_to(DType::BF16, x);
  std::vector<uint8_t> kb = encode(DType::BF16, k), vb = encode(DType::BF16, v);
  DevBuf dq = to_device(q), dk(kb.size()), dv(vb.size());
  gpu().upload(dk.get(), kb.data(), kb.size());
  gpu().upload(dv.get(), vb.data(), vb.size());
  const HeadsCall call{H, qpk, hd, n_q, prefix, kv_stride, lse_stride};
  auto args = [&](const void* kp, const void* vp, float* out, float* lse) {
    return call.args(dq.f(), kp, vp, out, lse);
  };
  const size_t out_n = static_cast<size_t>(n_q) * q_w, lse_n = static_cast<size_t>(H) * lse_stride;
  auto run = [&](Backend& be, bool batched) {
    DevBuf out = poisoned(out_n), lse = poisoned(lse_n);
    AttnArgs a = args(dk.get(), dv.get(), out.f(), lse.f());
    if (batched) {
      be.attention(a);
    } else {
      for (int j = 0; j < H; ++j) be.attention(attention_head(a, j));
    }
    be.synchronize();
    return std::make_pair(to_host(out, out_n), to_host(lse, lse_n));
  };
  // The CPU backend, head by head, on the same bytes.
  std::vector<float> cpu_out(out_n, kNaN), cpu_lse(lse_n, kNaN);
  {
    AttnArgs a = args(kb.data(), vb.data(), cpu_out.data(), cpu_lse.data());
    a.q = q.data();
    cpu().attention(a);
  }
  auto lse_rows = [&](const std::vector<float>& l) {  // drop the padding between heads
    std::vector<float> r;
    for (int j = 0; j < H; ++j) r.insert(r.end(), l.begin() + j * lse_stride, l.begin() + j * lse_stride + n_q * qpk);
    return r;
  };
  for (Backend* be : {&gpu(), &gpu_own()}) {
    const bool own = be == &gpu_own();
    SCOPED_TRACE(own ? "own kernels" : cuda_attention_path(*be));
    auto [out_b, lse_b] = run(*be, true);
    auto [out_h, lse_h] = run(*be, false);
    EXPECT_TRUE(close(out_b, widen(cpu_out), 1e-2)) << "batched vs CPU: output";
    EXPECT_TRUE(close(lse_rows(lse_b), widen(lse_rows(cpu_lse)), 2e-2, true)) << "batched vs CPU: lse";
    EXPECT_TRUE(close(out_b, widen(out_h), 1e-2)) << "batched vs per head: output";
    const bool same_bits = std::memcmp(out_b.data(), out_h.data(), out_n * 4) == 0 &&
                           lse_rows(lse_b) == lse_rows(lse_h);
    std::printf("%s: several KV heads in one call %s one call per head bit for bit\n",
                own ? "own kernels" : "default path", same_bits ? "equals" : "differs from");
    if (own) EXPECT_TRUE(same_bits);
    for (int j = 0; j + 1 < H; ++j)
      EXPECT_TRUE(std::isnan(lse_b[j * lse_stride + n_q * qpk])) << "lse written into the padding after head " << j;

    // The prefix in one call, then the chunk accumulated into it: same result.
    // Scratch as AttnArgs documents it: room for every head of the call.
    DevBuf out = poisoned(out_n), lse = poisoned(lse_n), scratch = poisoned(static_cast<size_t>(n_q) * H * qpk * (hd + 1));
    AttnArgs a = args(dk.get(), dv.get(), out.f(), lse.f());
    AttnArgs first = a, second = a;
    first.pieces = {a.pieces[0]};
    second.pieces = {a.pieces[1]};
    second.accumulate = true;
    second.scratch = scratch.f();
    be->attention(first);
    be->attention(second);
    be->synchronize();
    EXPECT_TRUE(close(to_host(out, out_n), widen(out_b), 1e-2)) << "prefix, then chunk accumulated: output";
    EXPECT_TRUE(close(lse_rows(to_host(lse, lse_n)), widen(lse_rows(lse_b)), 2e-2, true))
        << "prefix, then chunk accumulated: lse";
  }
}

// A chunk attending block after block (the engine's prefill): a call promising
// q_unchanged reuses the queries the cuDNN path converted in the call before (the
// default; HEADINFER_CUDA_Q_REUSE=0 turns it off, so it is set here explicitly). The
// same bits as converting again, and the reuse is real: with q overwritten between the
// calls (a broken promise) the second call still sees the old queries.
TEST(CudaAttentionHeads, QUnchangedKeepsConvertedQueries) {
  HI_REQUIRE_CUDA();
  static std::unique_ptr<Backend> reuse = gpu_with_env("HEADINFER_CUDA_Q_REUSE", "1");
  Backend& be = *reuse;
  if (cuda_attention_path(be).find("cuDNN") == std::string::npos)
    GTEST_SKIP() << "the reuse is the cuDNN path's; path here: " << cuda_attention_path(be);
  const int H = 8, qpk = 4, hd = 128, n_q = 512;
  const int64_t prefix = 1024, kv_stride = (prefix + n_q) * hd, q_w = int64_t{H} * qpk * hd;
  std::mt19937 rng(7);
  const std::vector<float> q = randn(static_cast<size_t>(n_q) * q_w, rng), q2 = randn(q.size(), rng);
  std::vector<float> k = randn(static_cast<size_t>(H) * kv_stride, rng), v = randn(k.size(), rng);
  std::vector<uint8_t> kb = encode(DType::BF16, k), vb = encode(DType::BF16, v);
  DevBuf dq = to_device(q), dk(kb.size()), dv(vb.size());
  be.upload(dk.get(), kb.data(), kb.size());
  be.upload(dv.get(), vb.data(), vb.size());
  const size_t out_n = static_cast<size_t>(n_q) * q_w, lse_n = static_cast<size_t>(H) * n_q * qpk;
  DevBuf scratch = poisoned(static_cast<size_t>(n_q) * H * qpk * (hd + 1));
  // The prefix block, then the chunk accumulated into it; q2 (if any) written between.
  auto run = [&](bool unchanged, const std::vector<float>* between) {
    DevBuf out = poisoned(out_n), lse = poisoned(lse_n);
    be.upload(dq.get(), q.data(), q.size() * 4);
    AttnArgs a = HeadsCall{H, qpk, hd, n_q, prefix, kv_stride, int64_t{n_q} * qpk}.args(dq.f(), dk.get(), dv.get(),
                                                                                       out.f(), lse.f());
    const KvPiece chunk = a.pieces[1];
    a.pieces.pop_back();
    a.scratch = scratch.f();
    be.attention(a);
    if (between) {
      be.synchronize();
      be.upload(dq.get(), between->data(), between->size() * 4);
    }
    a.pieces = {chunk};
    a.accumulate = true;
    a.q_unchanged = unchanged;
    be.attention(a);
    be.synchronize();
    return std::make_pair(to_host(out, out_n), to_host(lse, lse_n));
  };
  const auto converted = run(false, nullptr), kept = run(true, nullptr);
  EXPECT_EQ(std::memcmp(converted.first.data(), kept.first.data(), out_n * 4), 0) << "output";
  EXPECT_EQ(std::memcmp(converted.second.data(), kept.second.data(), lse_n * 4), 0) << "lse";
  const auto stale = run(true, &q2), fresh = run(false, &q2);
  EXPECT_EQ(std::memcmp(stale.first.data(), converted.first.data(), out_n * 4), 0)
      << "a call promising q_unchanged converted the queries again";
  EXPECT_NE(std::memcmp(fresh.first.data(), converted.first.data(), out_n * 4), 0)
      << "a call not promising it kept the old queries";
}

// The result as rows of the KV dtype (AttnArgs::out_rows, what the O projection takes
// with HEADINFER_CUDA_BF16_ROWS): a chunk with no earlier keys on cuDNN (its output is
// the rows: no epilogue), then the chunk after a prefix (merged in f32, then rounded),
// on the default path and the own kernels: every value the f32 result's, rounded.
TEST(CudaAttentionHeads, ResultAsRowsIsTheF32ResultRounded) {
  HI_REQUIRE_CUDA();
  const int H = 8, qpk = 4, hd = 128, n_q = 512;
  const int64_t prefix = 1024, kv_stride = (prefix + n_q) * hd, q_w = int64_t{H} * qpk * hd;
  std::mt19937 rng(17);
  const std::vector<float> q = randn(static_cast<size_t>(n_q) * q_w, rng);
  std::vector<float> k = randn(static_cast<size_t>(H) * kv_stride, rng), v = randn(k.size(), rng);
  std::vector<uint8_t> kb = encode(DType::BF16, k), vb = encode(DType::BF16, v);
  DevBuf dq = to_device(q), dk(kb.size()), dv(vb.size());
  gpu().upload(dk.get(), kb.data(), kb.size());
  gpu().upload(dv.get(), vb.data(), vb.size());
  const size_t out_n = static_cast<size_t>(n_q) * q_w, lse_n = static_cast<size_t>(H) * n_q * qpk;
  for (Backend* be : {&gpu(), &gpu_own()}) {
    for (bool with_prefix : {false, true}) {
      SCOPED_TRACE(std::string(be == &gpu_own() ? "own kernels" : cuda_attention_path(*be)) +
                   (with_prefix ? ", after a prefix" : ", the chunk alone"));
      AttnArgs a = HeadsCall{H, qpk, hd, n_q, prefix, kv_stride, int64_t{n_q} * qpk}.args(dq.f(), dk.get(), dv.get(),
                                                                                          nullptr, nullptr);
      if (!with_prefix) {  // the chunk at position 0: its own keys only
        a.pieces = {a.pieces[1]};
        a.pieces[0].pos0 = 0;
        a.q_pos0 = 0;
      }
      DevBuf out = poisoned(out_n), lse = poisoned(lse_n), out2 = poisoned(out_n), lse2 = poisoned(lse_n),
             rows(out_n * 2);
      a.out = out.f();
      a.lse = lse.f();
      be->attention(a);
      AttnArgs r = a;
      r.out = out2.f();
      r.lse = lse2.f();
      r.out_rows = rows.get();
      be->attention(r);
      be->synchronize();
      const std::vector<float> f = to_host(out, out_n);
      std::vector<uint16_t> got(out_n);
      ASSERT_EQ(cudaMemcpy(got.data(), rows.get(), out_n * 2, cudaMemcpyDeviceToHost), cudaSuccess);
      size_t bad = 0;
      for (size_t i = 0; i < out_n; ++i) bad += got[i] != f32_to_bf16(f[i]);
      EXPECT_EQ(bad, 0u) << "of " << out_n << " values differ from the f32 result rounded";
    }
  }
}

// Says which prefill path ran the cases above; on the GPU machine the check script sets
// HEADINFER_EXPECT_CUDNN=1 so a missing cuDNN is a failure there, not a silent fallback.
TEST(CudaAttentionPath, CudnnWhereExpected) {
  HI_REQUIRE_CUDA();
  const std::string path = cuda_attention_path(gpu());
  std::printf("attention path: %s\n", path.c_str());
  const char* expect = std::getenv("HEADINFER_EXPECT_CUDNN");
  if (expect && std::string(expect) == "1") EXPECT_NE(path.find("cuDNN 9"), std::string::npos) << path;
}

// The warpgroup-MMA kernel (compute capability 9.0) on shapes with many row blocks, key
// tiles and splits, against the 16-row-per-warp kernel on the same inputs (both own
// kernels: cuDNN is turned off for the backends made here). MatchesReference checks
// it against the exact reference on the small shapes.
TEST(CudaAttentionPath, WarpgroupKernelOnHopper) {
  HI_REQUIRE_CUDA();
  if (!headinfer::cuda::attention_wgmma_available())
    GTEST_SKIP() << "the device is not compute capability 9.0: the warpgroup-MMA kernel is not checked here";
  setenv("HEADINFER_CUDA_ATTN_PATH", "own", 1);
  auto base = gpu_with_block_shape("4");
  auto wg1 = gpu_with_block_shape("wg");
  auto wg2 = gpu_with_block_shape("wg2");
  unsetenv("HEADINFER_CUDA_ATTN_PATH");
  const std::vector<AttnCase> cases = {
      {"wg_causal_self_3000", 3000, 4, 128, BF, true, 0, {{3000, 0}}},
      {"wg_chunk_after_prefix_f16", 1000, 4, 128, F16, true, 6000, {{6000, 0}, {1000, 6000}}},
      {"wg_hd64_gqa8_pieces", 700, 8, 64, BF, true, 2100, {{1500, 0}, {33, 1600}, {700, 2100}}},
      {"wg_noncausal", 513, 1, 128, BF, false, 0, {{4099, 0}}},
  };
  std::mt19937 rng(7);
  for (const AttnCase& c : cases) {
    SCOPED_TRACE(c.name);
    const int64_t q_stride = static_cast<int64_t>(c.n_qh) * c.head_dim;
    std::vector<float> q = make_q(c, q_stride, rng);
    KvData kv = make_kv(c, rng);
    DevBuf dq = to_device(q);
    const float scale = 1.f / std::sqrt(static_cast<float>(c.head_dim));
    GpuResult want = run_attention(c, dq, q_stride, scale, kv.pieces, *base);
    for (Backend* be : {wg1.get(), wg2.get()}) {
      GpuResult got = run_attention(c, dq, q_stride, scale, kv.pieces, *be);
      EXPECT_TRUE(close(got.out, widen(want.out), 2e-3)) << (be == wg1.get() ? "wg" : "wg2") << ": output";
      EXPECT_TRUE(close(got.lse, widen(want.lse), 1e-3, true)) << (be == wg1.get() ? "wg" : "wg2") << ": lse";
      EXPECT_EQ(got.pad_written, 0u);
    }
  }
}

TEST(CudaAttentionStream, BackToBackCalls) {
  HI_REQUIRE_CUDA();
  const std::vector<AttnCase> cases = {
      {"b2b_decode_40k", 1, 4, 128, BF, true, 40000, {{40001, 0}}},
      {"b2b_decode_3k", 1, 4, 128, BF, true, 3000, {{3001, 0}}},
      {"b2b_chunk", 6, 4, 128, BF, true, 9000, {{9006, 0}}},
      {"b2b_prefill_split", 64, 4, 128, BF, true, 20000, {{20064, 0}}},
      {"b2b_decode_f16_20k", 1, 8, 64, F16, true, 20000, {{20001, 0}}},
  };
  std::mt19937 rng(99);
  struct Run {
    std::vector<float> q;
    KvData kv;
    DevBuf dq, out, lse;
    int64_t q_stride;
  };
  std::vector<Run> runs;
  for (const AttnCase& c : cases) {
    Run r;
    r.q_stride = static_cast<int64_t>(c.n_qh) * c.head_dim;
    r.q = make_q(c, r.q_stride, rng);
    r.kv = make_kv(c, rng);
    r.dq = to_device(r.q);
    r.out = poisoned(static_cast<size_t>(c.n_q) * r.q_stride);
    r.lse = poisoned(static_cast<size_t>(c.n_q) * c.n_qh);
    runs.push_back(std::move(r));
  }
  for (int rep = 0; rep < 3; ++rep)
    for (size_t i = 0; i < cases.size(); ++i) {
      const AttnCase& c = cases[i];
      AttnArgs a;
      a.q = runs[i].dq.f();
      a.q_stride = runs[i].q_stride;
      a.n_q = c.n_q;
      a.n_qh = c.n_qh;
      a.head_dim = c.head_dim;
      a.q_pos0 = c.q_pos0;
      a.causal = c.causal;
      a.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
      a.kv_dtype = c.kv;
      a.pieces = runs[i].kv.pieces;
      a.out = runs[i].out.f();
      a.out_stride = runs[i].q_stride;
      a.lse = runs[i].lse.f();
      gpu().attention(a);
    }
  gpu().synchronize();
  for (size_t i = 0; i < cases.size(); ++i) {
    const AttnCase& c = cases[i];
    std::vector<double> ref_out, ref_lse;
    reference(c, runs[i].q, runs[i].q_stride, 1.0f / std::sqrt(static_cast<float>(c.head_dim)), runs[i].kv, {0},
              ref_out, ref_lse);
    const auto got = to_host(runs[i].out, ref_out.size());
    EXPECT_TRUE(close(got, ref_out, out_tol(c))) << c.name << ": output";
    EXPECT_TRUE(close(to_host(runs[i].lse, ref_lse.size()), ref_lse, lse_tol(c), true)) << c.name << ": lse";
  }
}

}  // namespace
}  // namespace headinfer::test

#else

TEST(CudaAttention, NotBuilt) { GTEST_SKIP() << "built without CUDA (configure with -DHEADINFER_CUDA=ON, preset cuda)"; }

#endif  // HEADINFER_HAVE_CUDA
