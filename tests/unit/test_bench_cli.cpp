// `headinfer bench` on tiny synthetic models: it runs, its formats parse, its
// numbers are positive and consistent with each other and with the plan, and bad
// arguments give one-line errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "cli_runner.hpp"

namespace {

using headinfer::test::cli;
using headinfer::test::CliRun;
using headinfer::test::lines;
using json = nlohmann::json;

const std::string kBase = "bench -m synthetic:tiny-gqa --backend cpu -t 2 --link-gbs 10 --decode-tokens 3 ";

json rows_of(const CliRun& r) {
  EXPECT_EQ(r.code, 0) << r.err;
  json j = json::parse(r.out, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << r.out;
  EXPECT_TRUE(j.is_array()) << r.out;
  return j;
}

TEST(BenchCli, JsonRowsArePositiveAndConsistent) {
  const json rows = rows_of(cli(kBase + "--context 64,100 --reps 2 -o json"));
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0]["context"], 64);
  EXPECT_EQ(rows[1]["context"], 100);
  for (const json& r : rows) {
    SCOPED_TRACE(r.dump());
    EXPECT_EQ(r["engine"], "headinfer");
    EXPECT_EQ(r["status"], "ok");
    EXPECT_EQ(r["fill"], "prefill");
    EXPECT_EQ(r["reps"], 2);
    EXPECT_GT(r["prefill_tps"].get<double>(), 0);
    EXPECT_LE(r["prefill_tps_min"].get<double>(), r["prefill_tps"].get<double>());
    EXPECT_GE(r["prefill_tps_max"].get<double>(), r["prefill_tps"].get<double>());
    EXPECT_GT(r["decode_ms"].get<double>(), 0);
    EXPECT_LE(r["decode_ms_min"].get<double>(), r["decode_ms"].get<double>());
    EXPECT_GE(r["decode_ms_max"].get<double>(), r["decode_ms"].get<double>());
    EXPECT_GT(r["decode_floor_ms"].get<double>(), 0);
    EXPECT_GT(r["predicted_decode_ms"].get<double>(), 0);
    EXPECT_GT(r["measured_d2d_gbs"].get<double>(), 0);
    EXPECT_GT(r["measured_h2d_gbs"].get<double>(), 0);
    // The CPU arena's accounted peak is the plan's device footprint, which counts
    // the largest chunk's buffers (a 64-token prompt uses a little less).
    EXPECT_EQ(r["gpu_peak_source"], "accounted");
    const auto peak = r["gpu_peak_bytes"].get<int64_t>(), predicted = r["predicted_gpu_bytes"].get<int64_t>();
    EXPECT_LE(peak, predicted);
    EXPECT_GE(peak, predicted - predicted / 100);
    EXPECT_EQ(r["slabs_resident"], 6);
    EXPECT_EQ(r["slabs_offloaded"], 0);
    EXPECT_EQ(r["h2d_per_token_bytes"], 0);
    EXPECT_EQ(r["offloaded_kv_bytes"], 0);
    EXPECT_GT(r["weight_read_bytes"].get<int64_t>(), 0);
  }
}

TEST(BenchCli, OffloadedRowsMoveWhatThePlanSays) {
  const json rows = rows_of(cli(kBase + "--context 200 --reps 1 --offload all -o json"));
  ASSERT_EQ(rows.size(), 1u);
  const json& r = rows[0];
  EXPECT_EQ(r["slabs_offloaded"], 6);
  EXPECT_GT(r["host_kv_bytes"].get<int64_t>(), 0);
  EXPECT_EQ(r["host_kv_bytes"], r["predicted_host_bytes"]);
  // All of it pinned: the plan pins what its budget allows, here the whole pool.
  EXPECT_EQ(r["host_pinned_bytes"], r["plan_host_pinned_bytes"]);
  EXPECT_EQ(r["host_pinned_bytes"], r["host_kv_bytes"]);
  // Decode moves every offloaded slab's earlier tokens each step: at least the
  // context's, at most the plan's (made for the full capacity).
  const int64_t h2d = r["h2d_per_token_bytes"].get<int64_t>();
  EXPECT_GE(h2d, r["offloaded_kv_bytes"].get<int64_t>());
  EXPECT_LE(h2d, r["predicted_h2d_per_token_bytes"].get<int64_t>());
  EXPECT_GT(r["link_gbs"].get<double>(), 0);
  EXPECT_GT(r["d2h_per_token_bytes"].get<int64_t>(), 0);
}

TEST(BenchCli, SyntheticFillAboveTheThresholdAndProfile) {
  const json rows = rows_of(cli(kBase + "--context 48,300 --reps 2 --fill-above 64 --profile -o json"));
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0]["fill"], "prefill");
  EXPECT_EQ(rows[1]["fill"], "synthetic");
  EXPECT_TRUE(rows[1]["prefill_tps"].is_null());
  EXPECT_GT(rows[1]["decode_ms"].get<double>(), 0);
  EXPECT_GE(rows[1]["fill_s"].get<double>(), 0);
  // The profiled prefill: every phase ran, and the shares add up to at most 100%.
  const json& p = rows[0];
  double sum = 0;
  for (const char* ph : {"gemm", "attention", "other"}) {
    EXPECT_GT(p[std::string(ph) + "_calls"].get<int64_t>(), 0) << ph;
    EXPECT_GT(p[std::string(ph) + "_pct"].get<double>(), 0) << ph;
    sum += p[std::string(ph) + "_pct"].get<double>();
  }
  EXPECT_LE(sum, 100.5);
  EXPECT_GE(p["unattributed_pct"].get<double>(), -0.5);
  EXPECT_GT(p["profile_prefill_s"].get<double>(), 0);
  EXPECT_TRUE(rows[1]["gemm_pct"].is_null());  // no prefill to profile
  // The profiled decode steps, after a prefill and after a fill alike: per token, four
  // matmuls per layer and the LM head, one attention call or more per layer.
  for (const json& r : rows) {
    EXPECT_GT(r["profile_decode_ms"].get<double>(), 0);
    double dsum = 0;
    for (const char* ph : {"gemm", "attention", "other"}) {
      EXPECT_GT(r[std::string("decode_") + ph + "_pct"].get<double>(), 0) << ph;
      dsum += r[std::string("decode_") + ph + "_pct"].get<double>();
    }
    EXPECT_LE(dsum, 100.5);
    EXPECT_EQ(r["decode_gemm_calls_per_token"].get<int64_t>() % 4, 1);
    EXPECT_GE(r["decode_attention_calls_per_token"].get<int64_t>(), 1);
    // Per op, the CPU backend's ops timed on the host: matmuls by weight shape.
    EXPECT_EQ(r["profile_timing"], "synchronised");
    const std::string ops = r["decode_ops_us"].get<std::string>();
    EXPECT_NE(ops.find("matmul "), std::string::npos) << ops;
    EXPECT_NE(ops.find("attention "), std::string::npos) << ops;
  }
}

TEST(BenchCli, CsvAndMarkdownHaveOneRowPerContext) {
  CliRun r = cli(kBase + "--context 32,64,96 --reps 1 -o csv");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(lines(r.out), 4) << r.out;
  EXPECT_EQ(r.out.rfind("engine,model,backend,", 0), 0u) << r.out;
  std::istringstream in(r.out);
  std::string header, line;
  std::getline(in, header);
  const auto commas = [](const std::string& s) { return std::count(s.begin(), s.end(), ','); };
  while (std::getline(in, line)) EXPECT_EQ(commas(line), commas(header)) << line;

  r = cli(kBase + "--context 32,64 --reps 1");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(lines(r.out), 4) << r.out;
  EXPECT_NE(r.out.find("| model | backend |"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("| synthetic:tiny-gqa | cpu |"), std::string::npos) << r.out;
}

TEST(BenchCli, RefusedContextIsARowAndOthersStillRun) {
  const json rows = rows_of(cli(kBase + "--context 32,1M --reps 1 --offload none --gpu-memory 4MiB -o json"));
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0]["status"], "ok");
  EXPECT_NE(rows[1]["status"].get<std::string>().find("--gpu-memory"), std::string::npos) << rows[1];
  EXPECT_TRUE(rows[1]["decode_ms"].is_null());
}

TEST(BenchCli, BadArgumentsAreOneLineErrors) {
  const std::pair<const char*, const char*> cases[] = {
      {"--context 64 -o xml", "-o: unknown output format 'xml'"},
      {"--context 0", "--context"},
      {"--context 64,abc", "--context"},
      {"--context 64 --reps 0", "--reps must be positive"},
      {"--context 64 --offload maybe", "--offload"},
      {"--context 64 --fill-above lots", "--fill-above"},
      {"--context 64 --kv-type q4", "--kv-type"},
      {"--context 5M", "exceed the model's context"},
  };
  for (const auto& [args, want] : cases) {
    const CliRun r = cli(kBase + args);
    EXPECT_NE(r.code, 0) << args;
    EXPECT_EQ(lines(r.err), 1) << args << ": " << r.err;
    EXPECT_NE(r.err.find(want), std::string::npos) << args << ": " << r.err;
  }
}

TEST(BenchCli, MaxContextSaysWhatLimitsItAndRunsIt) {
  json rows = rows_of(cli(kBase + "--max-context --offload none --gpu-memory 4MiB --reps 1 -o json"));
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0]["max_context_limit"], "gpu budget");
  EXPECT_NE(rows[0]["max_context_detail"].get<std::string>().find("--gpu-memory"), std::string::npos);
  EXPECT_EQ(rows[0]["status"], "ok");
  EXPECT_EQ(rows[0]["fill"], "synthetic");
  const int64_t gpu_limited = rows[0]["context"].get<int64_t>();
  EXPECT_GT(gpu_limited, 0);
  EXPECT_GT(rows[0]["decode_ms"].get<double>(), 0);
  // One token more would not fit: the plan at the next step was refused above.
  EXPECT_LE(rows[0]["gpu_peak_bytes"].get<int64_t>(), int64_t{4} << 20);

  rows = rows_of(cli(kBase + "--max-context --offload all --host-memory 1MiB --reps 1 -o json"));
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0]["max_context_limit"], "host ram");
  EXPECT_EQ(rows[0]["status"], "ok");
  EXPECT_LE(rows[0]["host_kv_bytes"].get<int64_t>(), int64_t{1} << 20);

  const CliRun r = cli(kBase + "--max-context --context 4K");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("drop --context"), std::string::npos) << r.err;
}

// "max" among the contexts: the other contexts run as asked, max as --max-context
// finds it under the same limits; only its row names a limit.
TEST(BenchCli, MaxInTheContextListRunsTheLongestBesideTheOthers) {
  json rows = rows_of(cli(kBase + "--context 1K,max --offload all --host-memory 1MiB --reps 1 -o json"));
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0]["context"], 1024);
  EXPECT_EQ(rows[0]["max_context_limit"], "");
  EXPECT_EQ(rows[1]["max_context_limit"], "host ram");
  EXPECT_EQ(rows[1]["fill"], "synthetic");
  EXPECT_EQ(rows[1]["status"], "ok");
  EXPECT_GT(rows[1]["context"].get<int64_t>(), 0);
  EXPECT_LE(rows[1]["host_kv_bytes"].get<int64_t>(), int64_t{1} << 20);
  EXPECT_GT(rows[1]["host_peak_rss_bytes"].get<int64_t>(), 0);
}

}  // namespace
