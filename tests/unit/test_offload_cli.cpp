// `headinfer plan` and generate's offloading flags as users meet them: the same
// text whatever the residency, stats with transfers, refusals in one line, Ctrl-C.
#include <gtest/gtest.h>

#include "cli_runner.hpp"

#include <fstream>
#include <string>
#include <utility>

namespace {

using headinfer::test::cli;
using headinfer::test::cli_interrupted;
using headinfer::test::CliRun;
using headinfer::test::lines;

TEST(OffloadCli, PlanPrintsPredictionsForTheReferenceGpu) {
  // Flat but for the pinned pool's page tables on the GPU (1/512 of the pool).
  // (1M: 128 decode splits a head against 512 at 4M, 6 MiB of partials less.)
  const std::pair<const char*, const char*> want[] = {{"512K", "17.00"}, {"1M", "17.12"}, {"4M", "17.88"}};
  for (const auto& [ctx, gib] : want) {
    CliRun r = cli(std::string("plan -m synthetic:llama-3-8b --context ") + ctx +
                   " --gpu-memory 24GiB --offload all --for gpu");
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find(std::string(gib) + " GiB predicted of 24.00 GiB"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("3 x 32.00 MiB"), std::string::npos) << r.out;
  }
}

// Under a budget too small to pin the whole pool, the plan says what pinning it all
// would cost and give.
TEST(OffloadCli, PartlyPinnedPlanSaysWhatPinningAllWouldTake) {
  const CliRun r = cli("plan -m synthetic:llama-3-8b --context 4M --offload all --gpu-memory 16.5GiB --for gpu");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("pageable to fit --gpu-memory"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("pinning      the whole pool would need --gpu-memory 17.3"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("(its page tables take 1.00 GiB)"), std::string::npos) << r.out;
  // A pool that fits pinned gets no such line.
  const CliRun all = cli("plan -m synthetic:llama-3-8b --context 512K --offload all --gpu-memory 24GiB --for gpu");
  ASSERT_EQ(all.code, 0) << all.err;
  EXPECT_EQ(all.out.find("pinning "), std::string::npos) << all.out;
}

TEST(OffloadCli, PlanRefusalsAreOneLine) {
  CliRun r = cli("plan -m synthetic:llama-3-8b --context 128K --gpu-memory 8GiB --for gpu");
  EXPECT_NE(r.code, 0);
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("weights alone take"), std::string::npos) << r.err;
  r = cli("plan -m synthetic:llama-3-8b --context 1M --gpu-memory 24GiB --for gpu --host-memory 100GiB");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("host memory"), std::string::npos) << r.err;
  // The CPU backend, no budgets: 512 GiB of KV is more than any CI machine's RAM.
  r = cli("plan -m synthetic:llama-3-8b --context 4M --offload none --backend cpu");
  EXPECT_NE(r.code, 0);
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("the CPU backend keeps the KV cache in host memory"), std::string::npos) << r.err;
  r = cli("plan -m synthetic:tiny-gqa --context 1K --offload sometimes --link-gbs 10");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("--offload"), std::string::npos) << r.err;
}

TEST(OffloadCli, GenerateTextIsTheSameWhateverTheResidency) {
  const std::string base = "generate -m synthetic:tiny-gqa --prompt-tokens 300 -n 12 --temp 0 --ignore-eos "
                           "--backend cpu -t 2 --link-gbs 10 --chunk-size 64";
  const CliRun resident = cli(base + " --offload none");
  const CliRun all = cli(base + " --offload all");
  const CliRun budget = cli(base + " --gpu-memory 2MiB");
  for (const CliRun* r : {&resident, &all, &budget}) ASSERT_EQ(r->code, 0) << r->err;
  EXPECT_EQ(resident.out, all.out);
  EXPECT_EQ(resident.out, budget.out);
  EXPECT_NE(all.err.find("0 resident + 6 offloaded"), std::string::npos) << all.err;
  EXPECT_NE(all.err.find("device peak"), std::string::npos) << all.err;
  EXPECT_NE(all.err.find("decode link"), std::string::npos) << all.err;
  EXPECT_NE(budget.err.find("6 resident + 0 offloaded"), std::string::npos) << budget.err;
  EXPECT_NE(budget.err.find("of 2.00 MiB"), std::string::npos) << budget.err;
}

// Ctrl-C during a long offloaded prefill: the generator stops at the next chunk, the
// process says where it stopped and exits with 130, nothing crashes or hangs.
TEST(OffloadCli, CtrlCDuringPrefillEndsCleanly) {
  // 300K prompt tokens take minutes on the CPU (attention is quadratic): the signal lands during prefill.
  const CliRun r = cli_interrupted("generate -m synthetic:tiny-gqa --prompt-tokens 300000 -n 4 --temp 0 "
                                   "--backend cpu -t 2 --offload all --chunk-size 256",
                                   1500);
  EXPECT_EQ(r.code, 130) << r.err;
  EXPECT_NE(r.err.find("cancelled by Ctrl-C during prefill, after "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("of 300000 prompt tokens"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("stop cancelled"), std::string::npos) << r.err;
}

TEST(OffloadCli, TooSmallBudgetIsRefusedInOneLine) {
  CliRun r = cli("generate -m synthetic:tiny-gqa -p hi -n 4 --backend cpu --gpu-memory 100KiB --link-gbs 10");
  EXPECT_NE(r.code, 0);
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("--gpu-memory 100.00 KiB"), std::string::npos) << r.err;
}

}  // namespace
