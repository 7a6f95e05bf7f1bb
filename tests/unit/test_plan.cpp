// The residency planner: refusals with numbers, buffers that do not grow with the
// context, adaptive grouping, and the Llama-3-8B predictions the issue asks for.
#include <gtest/gtest.h>

#include <cstdlib>

#include "format/model_loader.hpp"
#include "headinfer/error.hpp"
#include "kv/footprint.hpp"
#include "kv/plan.hpp"

namespace headinfer {
namespace {

constexpr int64_t GiB = int64_t{1} << 30;

PlanInputs llama8b(int64_t context, int64_t budget, OffloadMode mode) {
  static const LoadedModel m = load_model("synthetic:llama-3-8b", /*with_weights=*/false);
  PlanInputs in;
  in.model_name = m.spec;
  in.cfg = m.config;
  in.kv_dtype = DType::BF16;
  in.context = context;
  in.gpu_budget = budget;
  in.mode = mode;
  in.weight_bytes = prepared_weight_bytes(m.weights);
  in.device_overhead = int64_t{512} << 20;
  in.speeds = DeviceSpeeds{};  // the reference H100
  return in;
}

std::string refusal(const PlanInputs& in) {
  try {
    make_plan(in);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// What the pool may take of host RAM: MemAvailable less a reserve (1/32 of RAM, at
// least 2 GiB), or less where a cgroup's headroom is smaller; never negative.
TEST(Plan, HostPoolAllowanceKeepsAReserveAndHonoursTheCgroup) {
  const int64_t G = int64_t{1} << 30;
  EXPECT_EQ(host_pool_allowance(125 * G, 128 * G, -1, -1), 121 * G);       // 128 GiB / 32 = 4 GiB kept
  EXPECT_EQ(host_pool_allowance(20 * G, 24 * G, -1, -1), 18 * G);          // at least 2 GiB kept
  EXPECT_EQ(host_pool_allowance(125 * G, 128 * G, 64 * G, 10 * G), 50 * G);  // the cgroup binds: 54 - 4
  EXPECT_EQ(host_pool_allowance(125 * G, 128 * G, 200 * G, 10 * G), 121 * G);  // a loose cgroup does not
  EXPECT_EQ(host_pool_allowance(G, 128 * G, -1, -1), 0);
  EXPECT_EQ(host_pool_allowance(-1, 128 * G, -1, -1), -1);  // unknown stays unknown
}

TEST(Plan, WeightsAloneOverBudgetAreRefusedWithNumbers) {
  const std::string msg = refusal(llama8b(128 * 1024, 8 * GiB, OffloadMode::Auto));
  EXPECT_NE(msg.find("--gpu-memory 8.00 GiB"), std::string::npos) << msg;
  EXPECT_NE(msg.find("weights alone take 14.9"), std::string::npos) << msg;
}

// The CPU backend's device memory is host RAM: with host_backed_weights set, what the
// plan allocates beyond the weights used in place, plus the pool, must fit host RAM.
TEST(Plan, HostBackedDeviceMemoryMustFitHostRam) {
  static const LoadedModel m = load_model("synthetic:llama-3-8b", /*with_weights=*/false);
  PlanInputs in = llama8b(128 * 1024, -1, OffloadMode::None);
  in.device_overhead = 0;
  in.host_backed_weights = in_place_weight_bytes(m.weights);
  EXPECT_GT(in.host_backed_weights, 0);
  EXPECT_LT(in.host_backed_weights, in.weight_bytes);  // the fused matrices are copies
  in.host_available = 64 * GiB;
  const Plan p = make_plan(in);  // 16 GiB of KV and the fused copies fit 64 GiB
  const int64_t needed = p.gpu_total - in.host_backed_weights;
  EXPECT_GT(needed, 16 * GiB);
  in.host_available = needed - 1;
  const std::string msg = refusal(in);
  EXPECT_NE(msg.find("the CPU backend keeps the KV cache in host memory"), std::string::npos) << msg;
  EXPECT_NE(msg.find("--context 131072"), std::string::npos) << msg;
  in.host_available = needed;
  EXPECT_EQ(refusal(in), "");
  // Offloading does not help on the same RAM: the pool counts as well.
  in.mode = OffloadMode::All;
  in.host_available = needed - 1;
  EXPECT_NE(refusal(in), "");
}

TEST(Plan, TooLittleHostMemoryIsRefusedWithNumbers) {
  PlanInputs in = llama8b(1024 * 1024, 24 * GiB, OffloadMode::All);
  in.host_available = 64 * GiB;
  const std::string msg = refusal(in);
  EXPECT_NE(msg.find("--context 1048576"), std::string::npos) << msg;
  EXPECT_NE(msg.find("128.00 GiB of host memory"), std::string::npos) << msg;
  EXPECT_NE(msg.find("64.00 GiB"), std::string::npos) << msg;
}

TEST(Plan, NoOffloadThatCannotFitIsRefused) {
  const std::string msg = refusal(llama8b(128 * 1024, 24 * GiB, OffloadMode::None));
  EXPECT_NE(msg.find("--offload none"), std::string::npos) << msg;
  EXPECT_NE(msg.find("resident KV 16.00 GiB"), std::string::npos) << msg;
}

TEST(Plan, BudgetBelowTheSmallestPlanIsRefused) {
  const std::string msg = refusal(llama8b(128 * 1024, 15 * GiB + 600 * (int64_t{1} << 20), OffloadMode::All));
  EXPECT_NE(msg.find("smallest plan"), std::string::npos) << msg;
}

TEST(Plan, BuffersAreFixedWhateverTheContext) {
  const Plan a = make_plan(llama8b(64 * 1024, 24 * GiB, OffloadMode::All));
  const Plan b = make_plan(llama8b(4096 * 1024, 24 * GiB, OffloadMode::All));
  EXPECT_EQ(a.schedule.buffer_bytes, b.schedule.buffer_bytes);
  EXPECT_EQ(a.schedule.n_buffers, b.schedule.n_buffers);
  EXPECT_EQ(a.gpu.buffers, b.gpu.buffers);
  EXPECT_LE(a.schedule.buffer_bytes, 64 * (int64_t{1} << 20));
}

TEST(Plan, GroupsAreTheHeadsOneBufferHoldsABlockOf) {
  // Each fill is one block of as many heads as fit a buffer, so each block is one
  // attention call over all of them, whatever the context.
  for (int64_t ctx : {8 * 1024, 16 * 1024, 32 * 1024, 64 * 1024, 512 * 1024, 4096 * 1024}) {
    const Plan p = make_plan(llama8b(ctx, 24 * GiB, OffloadMode::All));
    const KvSchedule& s = p.schedule;
    const int64_t head_block = 2 * s.block_tokens * 128 * 2;  // K+V of one head's block, BF16
    for (int g : s.group_heads) {
      EXPECT_EQ(g, std::min<int64_t>(8, s.buffer_bytes / head_block)) << ctx;
      EXPECT_LE(g * head_block, s.buffer_bytes) << ctx;
    }
  }
  // With some heads resident, a group is at most the layer's offloaded heads.
  const Plan a = make_plan(llama8b(128 * 1024, 24 * GiB, OffloadMode::Auto));
  for (int l = 0; l < 32; ++l) EXPECT_LE(a.schedule.group_heads[l], std::max(1, a.schedule.host_heads(a.in.cfg, l))) << l;
}

TEST(Plan, ATightBudgetPinsPartOfThePoolSoMemoryIsFlatToFourMillionTokens) {
  // The driver's page tables for pinned memory (1/512 of it) are the one part of the
  // footprint that grows with the context: 1 GiB at 4M. Under a budget the plan pins
  // what fits and leaves the rest of the pool pageable.
  const int64_t budget = 16 * GiB + GiB / 2;
  const Plan p512k = make_plan(llama8b(512 * 1024, budget, OffloadMode::All));
  EXPECT_EQ(p512k.schedule.pinned_limit, -1);
  EXPECT_EQ(p512k.host_pinned, p512k.host_bytes);
  for (int64_t ctx : {int64_t{1} << 20, int64_t{4} << 20}) {
    const Plan p = make_plan(llama8b(ctx, budget, OffloadMode::All));
    EXPECT_LE(p.gpu_total, budget) << ctx;
    EXPECT_LE(std::abs(p.gpu_total - p512k.gpu_total), GiB / 2) << ctx;
    EXPECT_EQ(p.host_map, static_cast<int64_t>(static_cast<double>(p.host_pinned) / 512)) << ctx;
    if (p.schedule.pinned_limit >= 0) {
      EXPECT_EQ(p.host_pinned, p.schedule.pinned_limit) << ctx;
      EXPECT_LT(p.host_pinned, p.host_bytes) << ctx;
      // The pageable part streams slower, and the prediction says so.
      EXPECT_GT(p.transfer_seconds, static_cast<double>(p.h2d_per_token) / (p.in.speeds.link_gbs * 1e9)) << ctx;
    }
  }
  const Plan p4m = make_plan(llama8b(int64_t{4} << 20, budget, OffloadMode::All));
  EXPECT_GE(p4m.schedule.pinned_limit, 0) << "4M needs 1 GiB of page tables when all pinned";
  // Without a budget everything is pinned (the fastest copies).
  const Plan free4m = make_plan(llama8b(int64_t{4} << 20, -1, OffloadMode::All));
  EXPECT_EQ(free4m.schedule.pinned_limit, -1);
  EXPECT_EQ(free4m.host_pinned, free4m.host_bytes);
  EXPECT_GT(free4m.host_map, GiB - GiB / 8);
}

TEST(Plan, RooflineChunkForLlama8bIsAbout10K) {
  const Plan p = make_plan(llama8b(128 * 1024, 24 * GiB, OffloadMode::All));
  EXPECT_GE(p.chunk, 8192);
  EXPECT_LE(p.chunk, 12288);
}

// Every slab resident on a GPU: the largest chunk that fits, up to the whole context
// (at most 64K), instead of the roofline's ~10K; the roofline's when offloading or on
// the CPU backend (host RAM).
TEST(Plan, AllResidentTakesTheLargestChunkThatFits) {
  EXPECT_EQ(make_plan(llama8b(128 * 1024, 140 * GiB, OffloadMode::None)).chunk, 65536);
  EXPECT_EQ(make_plan(llama8b(64 * 1024, -1, OffloadMode::None)).chunk, 65536);
  EXPECT_EQ(make_plan(llama8b(50000, -1, OffloadMode::Auto)).chunk, 50000);
  const Plan auto_fits = make_plan(llama8b(128 * 1024, 140 * GiB, OffloadMode::Auto));
  EXPECT_EQ(auto_fits.offloaded_slabs, 0);
  EXPECT_EQ(auto_fits.chunk, 65536);
  // 36 GiB holds the weights and the KV (31 GiB) with a smaller chunk only.
  const Plan tight = make_plan(llama8b(128 * 1024, 36 * GiB, OffloadMode::None));
  EXPECT_LT(tight.chunk, 65536);
  EXPECT_GT(tight.chunk, 12288);
  EXPECT_LE(tight.gpu_total, 36 * GiB);
  const int roofline = make_plan(llama8b(128 * 1024, 24 * GiB, OffloadMode::All)).chunk;
  EXPECT_EQ(make_plan(llama8b(128 * 1024, 24 * GiB, OffloadMode::Auto)).chunk, roofline) << "offloading";
  PlanInputs cpu = llama8b(128 * 1024, -1, OffloadMode::None);
  cpu.host_backed_weights = cpu.weight_bytes / 2;
  EXPECT_EQ(make_plan(cpu).chunk, roofline) << "the CPU backend";
  PlanInputs fixed = llama8b(128 * 1024, -1, OffloadMode::None);
  fixed.chunk = 4096;
  EXPECT_EQ(make_plan(fixed).chunk, 4096) << "--chunk-size";
  // Another cap for A/B runs: the whole 128K prompt as one chunk over one block.
  setenv("HEADINFER_RESIDENT_CHUNK_MAX", "128K", 1);
  const Plan whole = make_plan(llama8b(128 * 1024, 140 * GiB, OffloadMode::None));
  setenv("HEADINFER_RESIDENT_CHUNK_MAX", "zero", 1);
  EXPECT_THROW(make_plan(llama8b(128 * 1024, 140 * GiB, OffloadMode::None)), Error);
  unsetenv("HEADINFER_RESIDENT_CHUNK_MAX");
  EXPECT_EQ(whole.chunk, 128 * 1024);
  EXPECT_EQ(whole.schedule.block_tokens, 128 * 1024);
  EXPECT_EQ(make_plan(llama8b(128 * 1024, 140 * GiB, OffloadMode::None)).chunk, 65536);
}

// With every slab on a GPU, a block sizes only the prefill's attention calls (one per
// earlier block, each merged into the chunk's output): one block covers the whole
// context. Offloading plans, a fixed --chunk-size (plans compared bit for bit) and the
// CPU backend keep the copy-sized block; decode's splits stay as they were.
TEST(Plan, AllResidentOnAGpuAttendsTheContextAsOneBlock) {
  const Plan off = make_plan(llama8b(128 * 1024, 24 * GiB, OffloadMode::Auto));
  ASSERT_GT(off.offloaded_slabs, 0);
  const int64_t copy_block = off.schedule.block_tokens;
  EXPECT_LT(copy_block, 128 * 1024);
  const Plan all = make_plan(llama8b(128 * 1024, 140 * GiB, OffloadMode::None));
  EXPECT_EQ(all.schedule.block_tokens, 128 * 1024);
  EXPECT_EQ(make_plan(llama8b(100000, -1, OffloadMode::Auto)).schedule.block_tokens, 128 * 1024);
  EXPECT_EQ(decode_split_tokens(128 * 1024, all.schedule.block_tokens), decode_split_tokens(128 * 1024, copy_block));
  PlanInputs fixed = llama8b(128 * 1024, -1, OffloadMode::None);
  fixed.chunk = 4096;
  EXPECT_EQ(make_plan(fixed).schedule.block_tokens, copy_block) << "--chunk-size";
  fixed.mode = OffloadMode::All;
  fixed.gpu_budget = 24 * GiB;
  EXPECT_EQ(make_plan(fixed).schedule.block_tokens, copy_block) << "the offloading plan it compares with";
  PlanInputs cpu = llama8b(128 * 1024, -1, OffloadMode::None);
  cpu.host_backed_weights = cpu.weight_bytes / 2;
  EXPECT_EQ(make_plan(cpu).schedule.block_tokens, copy_block) << "the CPU backend";
  EXPECT_NE(all.to_string().find("one over the whole context"), std::string::npos) << all.to_string();
}

TEST(Plan, AutoFillsTheBudgetWithResidentSlabs) {
  const Plan p = make_plan(llama8b(128 * 1024, 24 * GiB, OffloadMode::Auto));
  EXPECT_GT(p.resident_slabs, 0);
  EXPECT_GT(p.offloaded_slabs, 0);
  EXPECT_LE(p.gpu_total, 24 * GiB);
  // One more resident slab (64 MiB of K+V at 128K) would not fit.
  EXPECT_GT(p.gpu_total + 64 * (int64_t{1} << 20), 24 * GiB);
  // A budget that holds everything keeps everything resident.
  const Plan all = make_plan(llama8b(128 * 1024, 80 * GiB, OffloadMode::Auto));
  EXPECT_EQ(all.offloaded_slabs, 0);
  EXPECT_EQ(all.h2d_per_token, 0);
  EXPECT_EQ(all.gpu.buffers, 0);
}

TEST(Plan, Llama8bOffloadAllIsFlatFrom512KTo4M) {
  const Plan p128 = make_plan(llama8b(128 * 1024, 24 * GiB, OffloadMode::All));
  const Plan p512 = make_plan(llama8b(512 * 1024, 24 * GiB, OffloadMode::All));
  const Plan p1m = make_plan(llama8b(1024 * 1024, 24 * GiB, OffloadMode::All));
  const Plan p4m = make_plan(llama8b(4096 * 1024, 24 * GiB, OffloadMode::All));
  for (const Plan* p : {&p128, &p512, &p1m, &p4m}) {
    EXPECT_LE(p->gpu_total, 24 * GiB);
    EXPECT_EQ(p->resident_slabs, 0);
  }
  // What the engine allocates is flat but for the decode partials (32 splits a head
  // until a split is a whole KV block, then more: 128 at 512K, 512 at 4M, 8 MiB in all);
  // the driver's page tables for the pinned pool (1/512 of it) are not: 0.88 GiB more
  // at 4M than at 512K (docs/offload.md).
  const int64_t partials_4m = int64_t{512} * 32 * 129 * 4;  // [slots][heads][head_dim + 1] floats
  const int64_t partials_512k = int64_t{128} * 32 * 129 * 4;
  EXPECT_NEAR(static_cast<double>((p4m.gpu_total - p4m.host_map) - (p512.gpu_total - p512.host_map)),
              static_cast<double>(partials_4m - partials_512k), 64 * 1024.0);
  EXPECT_LE(p1m.gpu_total - p1m.host_map, p4m.gpu_total - p4m.host_map);
  EXPECT_GE(p1m.gpu_total - p1m.host_map, p512.gpu_total - p512.host_map);
  EXPECT_LE(std::abs(p1m.gpu_total - p512.gpu_total), GiB / 2);
  EXPECT_EQ(p4m.host_map, p4m.host_bytes / 512);
  // All KV moves each decode token: 128 KiB per token of context.
  EXPECT_EQ(p1m.h2d_per_token, int64_t{128} * 1024 * 1024 * 1024);
  EXPECT_EQ(p4m.host_bytes, int64_t{512} * GiB);
  EXPECT_NEAR(p1m.transfer_seconds, 128.0 * GiB / 54e9, 1e-9);
}

TEST(Plan, DecodeSplitsArePowersOfTwoDividingTheBlock) {
  EXPECT_EQ(decode_split_tokens(128 * 1024, 8192), 4096);  // 32 splits
  EXPECT_EQ(decode_split_tokens(128 * 1024 + 4096, 8192), 4096);
  EXPECT_EQ(decode_split_tokens(32 * 1024 + 4096, 8192), 1024);  // 36 splits: 2048 would give 18
  EXPECT_EQ(decode_split_tokens(5632 - 1, 8192), 128);           // the first doubling at 2 * 128 * 22
  EXPECT_EQ(decode_split_tokens(5632, 8192), 256);
  EXPECT_EQ(decode_split_tokens(11264 - 1, 8192), 256);
  EXPECT_EQ(decode_split_tokens(11264, 8192), 512);
  EXPECT_EQ(decode_split_tokens(1024 * 1024, 8192), 8192);
  EXPECT_EQ(decode_split_tokens(1024 * 1024, 4096), 4096);  // never past the block
  EXPECT_EQ(decode_split_tokens(64 * 1024 * 1024, 8192), 8192);
  EXPECT_EQ(decode_split_tokens(1000, 512), 128);
  EXPECT_EQ(decode_split_tokens(4096 + 16, 8192), 128);
  EXPECT_EQ(decode_split_tokens(300000, 8192), 8192);
  EXPECT_EQ(decode_split_tokens(150000, 8192), 4096);
  EXPECT_EQ(decode_split_tokens(1000, 64), 64);
  EXPECT_EQ(decode_split_tokens(1000, 12), 4);  // the largest power of two dividing the block
  EXPECT_EQ(decode_split_tokens(1000, 5), 1);
}

// The decode partials ([slots][n_heads][head_dim] + [slots][n_heads] floats) are in
// the prediction, as allocated: ~32 slots from 16K on until a split is a whole block
// (8192 tokens from 256K), then capacity / 8192: 128 at 1M, 512 at 4M.
TEST(Plan, DecodePartialsAreCountedAndBounded) {
  const Plan p128 = make_plan(llama8b(128 * 1024, 24 * GiB, OffloadMode::All));
  const std::vector<int64_t> f = decode_partials_floats(p128.in.cfg, 128 * 1024, p128.schedule.block_tokens);
  ASSERT_EQ(f.size(), 2u);
  EXPECT_EQ(f[0], int64_t{32} * 32 * 128);
  EXPECT_EQ(f[1], int64_t{32} * 32);
  const DeviceFootprint fp = engine_footprint(p128.in.cfg, p128.in.kv_dtype, p128.schedule, 128 * 1024, p128.chunk,
                                              p128.mlp_chunk);
  int64_t without = 0;
  for (int64_t n : activation_floats(p128.in.cfg, p128.chunk, p128.mlp_chunk)) without += alloc_rounded(n * 4);
  for (int64_t n : attention_scratch_floats(p128.in.cfg, p128.chunk)) without += alloc_rounded(n * 4);
  without += alloc_rounded(int64_t{4} * p128.chunk);
  EXPECT_EQ(fp.activations - without, alloc_rounded(f[0] * 4) + alloc_rounded(f[1] * 4));
  const std::vector<int64_t> f1m = {int64_t{128} * 32 * 128, int64_t{128} * 32};
  EXPECT_EQ(decode_partials_floats(p128.in.cfg, 1024 * 1024, 8192), f1m);
  const std::vector<int64_t> f4m = {int64_t{512} * 32 * 128, int64_t{512} * 32};
  EXPECT_EQ(decode_partials_floats(p128.in.cfg, 4096 * 1024, 8192), f4m);
}

TEST(Plan, ScheduleFitsTheModel) {
  const Plan p = make_plan(llama8b(300 * 1000, 24 * GiB, OffloadMode::Auto));
  EXPECT_NO_THROW(p.schedule.validate(p.in.cfg, p.in.kv_dtype));
  EXPECT_NE(p.to_string().find("predicted"), std::string::npos);
}

TEST(Plan, BadModeIsOneLine) {
  try {
    parse_offload_mode("some");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--offload"), std::string::npos);
  }
}

}  // namespace
}  // namespace headinfer
