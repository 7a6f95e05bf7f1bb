#!/usr/bin/env bash
# One GPU-machine session's runs in named steps, each under its own time limit, so a
# step that hangs or runs long costs that step alone; everything lands in OUT and, at
# the end, in one archive OUT.tgz (for machines that hand back few files).
#
#   scripts/gpu_session.sh OUT STEP...        # on the GPU machine, after unpacking .devbin
#
# Steps (the list in docs/gpu.md, "The next GPU session"):
#   tests    every GPU test (scripts/gpu_check.sh, without its benchmarks)
#   tests-attention   test_cuda_attention alone
#   tests-decode      the decode path's tests: test_cuda_ops, _decode_splits, _engine, _offload
#   decode   all-resident decode at 4K, 32K and 128K, JSON rows (decode_host_wait_ms says
#            whether a step is bound by issuing launches or by the GPU), again with
#            HEADINFER_CUDA_PDL=0 (no programmatic launches), again with
#            HEADINFER_CUDA_FUSE_SWIGLU=1 (the SwiGLU in the gate/up GEMV), and profiled
#            (decode_ops_us: device time per op)
#   decode-kernel   cuda_attention --decode --quick (the decode attention kernels alone),
#            then the default one at 128K under Nsight Compute
#   decode-main   the decode step's first run alone
#   keys-m   the decode-path tests with HEADINFER_CUDA_DECODE_KEYS_M=1 and =0 (the
#            tensor-core decode kernel with the keys on the MMA's M side for every call,
#            for none), then decode at 4K, 32K and 128K in both settings, twice,
#            alternating, then the kernel's time at 4K and 32K under Nsight Compute in
#            each (KEYS_SETTINGS picks the settings; def is the default)
#   decode-splits decode at 4K and 32K with HEADINFER_DECODE_SPLIT_MIN 128, 512, 1024
#   decode-splits-128k   decode at 128K with HEADINFER_DECODE_SPLIT_MIN 1024, 2048, 4096
#   gemv-prefetch   decode at 4K and 32K with HEADINFER_CUDA_GEMV_PREFETCH_MB 0, 8, 24, 48
#   gemv-tune  decode at 4K and 32K with the GEMV's tuning by matrix, then fixed (8,1) and (2,1)
#   gemv     cuda_gemv --quick: the GEMV's tunings per Llama-3-8B projection
#   prefetch decode at 4K, 32K and 128K with the decode attention kernel prefetching 0, 2
#            and 4 steps ahead into L2 (HEADINFER_CUDA_DECODE_PREFETCH)
#   sample   generate 128 tokens after a 4K prompt: greedy, top-k 40 (on the device), top-k off
#   attn     cuda_attention --quick once: cuDNN and every own block shape, warpgroup MMA included
#   q-reuse  the engine's tests with HEADINFER_CUDA_Q_REUSE=0 (the cuDNN path converting
#            a chunk's queries in every block's call; keeping them is the default), then
#            all-resident prefill at 64K and 128K with it off and on, twice, alternating
#   torch-sdpa   PyTorch's fused attention on the same shapes (bench/peers/torch_sdpa.py):
#            cuDNN with and without the softmax statistics, FlashAttention
#   cudnn    cuDNN's candidate plans for the attention shapes (HEADINFER_CUDNN_PLAN)
#   staged   the pageable path: its measured rate (plan at 4M) and a 512K decode under a
#            budget that leaves part of the pool pageable (16 GiB with 1024-token chunks
#            pins about a third of it), staged and through the driver
#   clocks   nvidia-smi's SM clock and power every 200 ms (read only) during a 128K prefill and
#            during cuda_attention --quick: whether sustained work runs below the short runs' clock
#   bf16-rows HEADINFER_CUDA_BF16_ROWS=1, the default (GEMM inputs in BF16 from the norms and the first
#            chunk's attention, gate/up and the SwiGLU in the weight dtype): hf_parity.py on 4
#            layers at 8K with it on (prefill-vs-hf times it)
#   bf16-rows-ab  prefill (16K, 64K, 128K, --profile) with it off and on, alternating, twice
#   greedy-ahead  decode at 4K and 32K with each step waiting for the id before it
#            (HEADINFER_GREEDY_LOCKSTEP=1) and queued ahead (the default), alternating, twice
#   qkv-rope      decode at 4K and 32K with the RoPE + KV store after the QKV GEMV and in
#                 its epilogue (HEADINFER_CUDA_FUSE_QKV_ROPE=0 / 1), alternating, twice
#   swiglu-fused  decode at 4K and 32K with the SwiGLU after the gate/up GEMV and in its
#                 epilogue (HEADINFER_CUDA_FUSE_SWIGLU=0 / 1), alternating, twice
#   gemv-long     decode at 4K and 32K with the GEMVs of W with no more rows than columns (O,
#                 down) at (4,1) and (2,1) (HEADINFER_CUDA_GEMV_TUNE_LONG), alternating, twice
#   prefill-vs-hf  all-resident prefill at 16K, 64K and 128K, 5 reps (medians), with
#            HEADINFER_CUDA_BF16_ROWS=0 and =1 (the default), then hf_bench.py on the same contexts: the acceptance ratio
#   cudnn-sustained  cuda_attention --cudnn with each HEADINFER_CUDNN_PLAN (and the default) on causal
#            16K and 8K after 128K, each after 2 s of the same calls: the plan under the power limit
#   gemm     cuda_gemm: each prefill projection's GEMM under sustained load (the engine's path,
#            cublasGemmEx with f32 and BF16 out, cuBLASLt's heuristic algorithms), each line
#            with the mean SM clock and power nvidia-smi read (every 100 ms) while it ran
#   prefill-main  all-resident prefill at 16K, 64K and 128K with the plan's chunk, --profile
#   prefill-chunks  all-resident prefill at 64K and 128K with the plan's chunk and chunks of
#            10240, 32768, 65536 and 131072 tokens, the plan's rule with HEADINFER_RESIDENT_CHUNK_MAX=128K
#            (128K as one chunk over one block), then HF transformers' in the same call
#   prefill  all-resident prefill at 64K and 128K with chunks of 8K, 16K and 32K tokens
#            (--profile): does a larger chunk move prefill toward 1.1x HF?
#   hf512    HF transformers' offloaded cache at 512K (bench_tables.sh hf-offloaded)
#   repeat   one headinfer bench command twice (bench_tables.sh repeat), then its table
#   engine   bench_tables.sh engine: headinfer's rows of the memory and latency tables
#            (or one of its parts: engine-all, engine-resident, engine-24g)
#   hf       bench_tables.sh hf: HF transformers' rows of the same tables (or hf-dynamic,
#            hf-offloaded, hf-longest; one session must hold every row of a table)
#   maxctx   bench_tables.sh maxctx: the max-context table
#   ncu      Nsight Compute (clocks left alone): every kernel's device time in a 4K
#            decode (the last step's kernels are one decode step), then the 128K decode
#            attention kernel and the own prefill kernel's first launch in full detail
#   ncu-wide the 4 x 32-row own block's first launch on the 8K x one 8K block call, in full
# SESSION_LIMIT (seconds, default 540) bounds the whole; a step gets what is left, at
# most its own limit. TABLES (default OUT/tables) is where the table parts write rows:
# point two calls (engine, then hf) at one folder so hf finds engine's longest context.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:?output directory}"
shift
bin="${BIN:-.devbin}"
h="$bin/headinfer"
model=(-m synthetic:llama-3-8b)
tables="${TABLES:-$out/tables}"
mkdir -p "$out"
start=$(date +%s)
limit="${SESSION_LIMIT:-540}"
export HEADINFER_SHARED="${HEADINFER_SHARED:-$bin/assets}" HEADINFER_FIXTURES="$PWD/tests/fixtures"
export HEADINFER_EXPECT_CUDNN="${HEADINFER_EXPECT_CUDNN:-1}"

step() {  # step NAME SECONDS COMMAND...: output into OUT/NAME.log, a line into OUT/summary.txt
  local name="$1" want="$2"
  shift 2
  local left=$((limit - ($(date +%s) - start)))
  if [ "$left" -le 5 ]; then
    echo "$name: skipped, no time left" | tee -a "$out/summary.txt"
    return
  fi
  local s
  s=$(date +%s)
  timeout -k 5 "$((want < left ? want : left))" "$@" >"$out/$name.log" 2>&1
  echo "$name: exit $? in $(($(date +%s) - s)) s" | tee -a "$out/summary.txt"
}

# Nsight Compute: on the PATH or where the image installs it.
ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)

# decode_ab NAME VAR VALUE...: decode at 4K and 32K (32 tokens, 2 reps) with VAR set to each
# VALUE in turn, twice, into NAME<VALUE>-<rep>.log (a comma in VALUE becomes a dash).
decode_ab() {
  local name=$1 var=$2 rep v
  shift 2
  for rep in 1 2; do
    for v in "$@"; do
      step "$name${v/,/-}-$rep" 120 env "$var=$v" "$h" bench "${model[@]}" --context 4K,32K --decode-tokens 32 \
        --reps 2 --offload none -o json
    done
  done
}

tests() {
  for t in "$bin"/test_cuda_*; do
    [ -x "$t" ] && step "$(basename "$t")" 150 "$t"
    grep -hE '^\[  (PASSED|FAILED) |FAILED  \]' "$out/$(basename "$t").log" >>"$out/summary.txt" 2>/dev/null
  done
  # The random schedules' pageable pool chunks once more, through the driver's own
  # staging (the stager is the default).
  step test_cuda_offload-driver 150 env HEADINFER_CUDA_STAGED_PAGEABLE=0 "$bin/test_cuda_offload"
  grep -hE '^\[  (PASSED|FAILED) |FAILED  \]' "$out/test_cuda_offload-driver.log" >>"$out/summary.txt" 2>/dev/null
  # Where the warpgroup-MMA kernel fails its parity cases, which exchange of its shared
  # memory descriptors' strides (HEADINFER_CUDA_WGMMA_DESC_SWAP bits: K, V) passes.
  if grep -q "warpgroup MMA\|WarpgroupKernelOnHopper.*FAILED\|FAILED.*WarpgroupKernelOnHopper" "$out/test_cuda_attention.log" 2>/dev/null; then
    for sw in 1 2 3; do
      step "wgmma-swap$sw" 60 env HEADINFER_CUDA_WGMMA_DESC_SWAP=$sw "$bin/test_cuda_attention" \
        --gtest_filter='*WarpgroupKernelOnHopper*:*prefill_bf16_hd128_gqa4_self*:*prefill_bf16_hd64_gqa1_odd*'
      grep -hE '^\[  (PASSED|FAILED) |FAILED  \]' "$out/wgmma-swap$sw.log" | sed "s/^/swap $sw: /" >>"$out/summary.txt"
    done
  fi
  # The engine with the SwiGLU in decode's gate/up GEMV (opt-in until measured).
  for t in test_cuda_engine test_cuda_offload; do
    step "$t-fused-swiglu" 150 env HEADINFER_CUDA_FUSE_SWIGLU=1 "$bin/$t"
    grep -hE '^\[  (PASSED|FAILED) |FAILED  \]' "$out/$t-fused-swiglu.log" >>"$out/summary.txt" 2>/dev/null
  done
  # The offload path with prefill's GEMM inputs as f32 rows (BF16 rows are the default;
  # test_cuda_ops and test_cuda_engine test both in their own cases).
  step test_cuda_offload-f32-rows 150 env HEADINFER_CUDA_BF16_ROWS=0 "$bin/test_cuda_offload"
  grep -hE '^\[  (PASSED|FAILED) |FAILED  \]' "$out/test_cuda_offload-f32-rows.log" >>"$out/summary.txt" 2>/dev/null
  # The decode-path kernels without programmatic dependent launch (on by default).
  for t in test_cuda_ops test_cuda_engine test_cuda_offload; do
    step "$t-nopdl" 150 env HEADINFER_CUDA_PDL=0 "$bin/$t"
    grep -hE '^\[  (PASSED|FAILED) |FAILED  \]' "$out/$t-nopdl.log" >>"$out/summary.txt" 2>/dev/null
  done
}

for s in "$@"; do
  case "$s" in
    tests) tests ;;
    tests-attention)  # the attention parity tests alone
      step test_cuda_attention 150 "$bin/test_cuda_attention"
      grep -hE '^\[  (PASSED|FAILED) |FAILED  \]' "$out/test_cuda_attention.log" >>"$out/summary.txt"
      ;;
    tests-decode)  # the ops, the split-mode calls, the engine and the offload path, after a change to decode
      for t in test_cuda_ops test_cuda_decode_splits test_cuda_engine test_cuda_offload; do
        step "$t" 150 "$bin/$t"
        grep -hE '^\[  (PASSED|FAILED) |FAILED  \]' "$out/$t.log" >>"$out/summary.txt"
      done
      ;;
    decode)
      # As is, then without programmatic dependent launch, then with the SwiGLU in the
      # gate/up GEMV, then profiled (device time per op; the timestamps between ops
      # undo PDL's overlap).
      step decode 120 "$h" bench "${model[@]}" --context 4K,32K,128K --decode-tokens 16 --reps 2 --offload none -o json
      step decode-nopdl 120 env HEADINFER_CUDA_PDL=0 "$h" bench "${model[@]}" --context 4K,128K --decode-tokens 16 --reps 2 \
        --offload none -o json
      step decode-swiglu-fused 120 env HEADINFER_CUDA_FUSE_SWIGLU=1 "$h" bench "${model[@]}" --context 4K,128K \
        --decode-tokens 16 --reps 2 --offload none -o json
      step decode-profile 120 "$h" bench "${model[@]}" --context 4K,128K --decode-tokens 8 --reps 1 --offload none \
        --profile -o json
      ;;
    decode-kernel)
      # The decode attention kernels alone (tensor-core and CUDA-core, 4K-128K), then
      # the 128K case of the default one under Nsight Compute.
      step decode-kernel 120 "$bin/cuda_attention" --decode --quick
      step ncu-decode-kernel 120 "$ncu" --clock-control none --kernel-name regex:attn_decode --launch-count 1 \
        --section SpeedOfLight --section Occupancy --section SchedulerStats --section WarpStateStats \
        --section MemoryWorkloadAnalysis --section LaunchStats \
        --metrics 'smsp__inst_executed.sum,regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio' \
        "$bin/cuda_attention" --once
      # Its machine code (Hopper build), for counting instructions per key tile.
      cuobjdump -sass -arch sm_90 "$bin/cuda_attention" 2>/dev/null |
        awk '/Function : /{p = /attn_decode_mma/} p' >"$out/decode-mma.sass"
      ;;
    decode-splits)  # decode at 4K and 32K with splits of at least 128 (the default), 512 and 1024 keys
      for m in 128 512 1024; do
        step "decode-split-min$m" 120 env HEADINFER_DECODE_SPLIT_MIN=$m "$h" bench "${model[@]}" --context 4K,32K \
          --decode-tokens 16 --reps 2 --offload none -o json
      done
      ;;
    decode-splits-128k)  # decode at 128K with splits of 1024 (the rule's), 2048 and 4096 keys
      for m in 1024 2048 4096; do
        step "decode-128k-split$m" 120 env HEADINFER_DECODE_SPLIT_MIN=$m "$h" bench "${model[@]}" --context 128K \
          --decode-tokens 16 --reps 2 --offload none -o json
      done
      ;;
    gemv-prefetch)  # decode at 4K and 32K with the GEMVs' early L2 prefetch at 0, 8 (default), 24 and 48 MiB
      for mb in 0 8 24 48; do
        step "decode-gemv-prefetch$mb" 120 env HEADINFER_CUDA_GEMV_PREFETCH_MB=$mb "$h" bench "${model[@]}" \
          --context 4K,32K --decode-tokens 16 --reps 2 --offload none -o json
      done
      ;;
    gemv-tune)  # the default tuning by matrix against two fixed ones for every matrix, in one call
      for t in default 8,1 2,1; do
        tune=()
        [ "$t" != default ] && tune=("HEADINFER_CUDA_GEMV_TUNE=$t")
        step "decode-gemv-tune-${t/,/-}" 120 env "${tune[@]}" "$h" bench "${model[@]}" \
          --context 4K,32K --decode-tokens 16 --reps 2 --offload none -o json
      done
      ;;
    keys-m)
      # Settings (KEYS_SETTINGS, default "m1 m0"): the committed default (def), keys on M
      # off (m0), on (m1).
      keys_env() {
        case $1 in
          def) ;;
          m0) echo HEADINFER_CUDA_DECODE_KEYS_M=0 ;;
          m1) echo HEADINFER_CUDA_DECODE_KEYS_M=1 ;;
        esac
      }
      read -r -a settings <<<"${KEYS_SETTINGS:-m1 m0}"
      for m in "${settings[@]}"; do
        [ "$m" = def ] && continue  # the tests step runs the default
        for t in test_cuda_attention test_cuda_decode_splits test_cuda_engine test_cuda_offload; do
          # shellcheck disable=SC2046  # the settings are words
          step "keys-$m-$t" 150 env $(keys_env $m) "$bin/$t"
          grep -hE '^\[  (PASSED|FAILED) |FAILED  \]' "$out/keys-$m-$t.log" >>"$out/summary.txt"
        done
      done
      for pass in 1 2; do
        for m in "${settings[@]}"; do
          # shellcheck disable=SC2046
          step "decode-keys-$m-$pass" 120 env $(keys_env $m) "$h" bench "${model[@]}" \
            --context 4K,32K,128K --decode-tokens 16 --reps 2 --offload none -o json
        done
      done
      for m in "${settings[@]}"; do
        for c in 4K 32K; do
          # shellcheck disable=SC2046
          step "ncu-keys-$m-$c" 100 env $(keys_env $m) "$ncu" --clock-control none \
            --kernel-name regex:attn_decode_mma --launch-skip 64 --launch-count 1 \
            --metrics gpu__time_duration.sum,smsp__inst_executed.sum,dram__bytes_read.sum,launch__registers_per_thread \
            "$h" bench "${model[@]}" --context "$c" --decode-tokens 4 --reps 1 --offload none -o json
          grep -hE 'gpu__time|inst_exec|registers' "$out/ncu-keys-$m-$c.log" | sed "s/^/ncu-keys-$m-$c /" >>"$out/summary.txt"
        done
      done
      ;;
    decode-main)  # the all-resident decode rows alone (the first run of the decode step)
      step decode 120 "$h" bench "${model[@]}" --context 4K,32K,128K --decode-tokens 16 --reps 2 --offload none -o json
      ;;
    gemv)
      step gemv 120 "$bin/cuda_gemv" --quick  # every tuning per projection, 8 loads in flight too
      ;;
    prefetch)
      # The decode attention kernel prefetching 2 or 4 block steps ahead into L2 (the
      # same bits at any distance), against the default in the same call.
      for pf in 0 2 4; do
        step "decode-prefetch$pf" 120 env HEADINFER_CUDA_DECODE_PREFETCH=$pf "$h" bench "${model[@]}" \
          --context 4K,32K,128K --decode-tokens 16 --reps 2 --offload none -o json
      done
      ;;
    sample)
      # Decode with sampling: greedy (argmax on the device), top-k 40 (the top 40 on the
      # device, drawn on the host; then, HEADINFER_HOST_SAMPLING=1, the whole row read
      # back and the same top-k 40 on the host) and top-k off (the whole row), 4K prompt.
      for mode in "greedy:--temp 0" "topk40:--temp 0.8 --top-k 40" "hosttopk40:--temp 0.8 --top-k 40" "wholerow:--temp 0.8 --top-k 0"; do
        # shellcheck disable=SC2086
        step "sample-${mode%%:*}" 120 env HEADINFER_HOST_SAMPLING="$([ "${mode%%:*}" = hosttopk40 ] && echo 1 || echo 0)" \
          "$h" generate "${model[@]}" --prompt-tokens 4096 -n 128 --ignore-eos --seed 1 \
          ${mode#*:}
        grep -h "^stats" "$out/sample-${mode%%:*}.log" | sed "s/^/${mode%%:*}: /" >>"$out/summary.txt"
      done
      # The same draws either way: the generated text of the two top-k 40 runs.
      if cmp -s <(grep -v "^stats" "$out/sample-topk40.log") <(grep -v "^stats" "$out/sample-hosttopk40.log"); then
        echo "top-k 40, device and host: the same text" >>"$out/summary.txt"
      else
        echo "top-k 40, device and host: DIFFERENT text" >>"$out/summary.txt"
      fi
      ;;
    attn)
      # The attention benchmark once: cuDNN, then the own kernels' block shapes (the
      # warpgroup-MMA ones included on compute capability 9.0) against the GEMM rate.
      step attn 150 "$bin/cuda_attention" --quick
      grep -h 'TFLOP/s' "$out/attn.log" >>"$out/summary.txt"
      ;;
    q-reuse)
      step q-reuse-attention 90 env HEADINFER_CUDA_Q_REUSE=0 "$bin/test_cuda_attention" --gtest_filter='*QUnchanged*'
      for t in test_cuda_engine test_cuda_offload; do
        step "q-reuse-$t" 150 env HEADINFER_CUDA_Q_REUSE=0 "$bin/$t"
      done
      for t in q-reuse-attention q-reuse-test_cuda_engine q-reuse-test_cuda_offload; do
        grep -hE '^\[  (PASSED|FAILED) |FAILED  \]|SKIPPED' "$out/$t.log" | sed "s/^/$t: /" >>"$out/summary.txt"
      done
      for pass in 1 2; do
        for r in 0 1; do
          step "prefill-q-reuse$r-$pass" 90 env HEADINFER_CUDA_Q_REUSE=$r "$h" bench "${model[@]}" --context 64K,128K \
            --decode-tokens 0 --reps 2 --offload none -o json
        done
      done
      ;;
    torch-sdpa)
      step torch-sdpa 150 python3 bench/peers/torch_sdpa.py --json "$out/torch-sdpa.json"
      grep -h 'TFLOP/s\|failed\|torch ' "$out/torch-sdpa.log" >>"$out/summary.txt"
      ;;
    cudnn)
      for p in A:1 A:2 A:3 B:0 B:1 B:2; do step "cudnn-$p" 60 env HEADINFER_CUDNN_PLAN="$p" "$bin/cuda_attention" --quick; done
      ;;
    cudnn-sustained)  # each cuDNN plan on causal 16K and 8K after 128K after 2 s of the same calls
      for p in default A:1 A:2 A:3 B:0 B:1 B:2; do
        for c in 1 3; do
          step "cudnn-sustained-$p-$c" 60 env HEADINFER_CUDNN_PLAN="${p#default}" "$bin/cuda_attention" --cudnn \
            --case "$c" --sustained 2
          grep -h 'TFLOP/s' "$out/cudnn-sustained-$p-$c.log" | grep -v ceiling | sed "s/^/$p: /" >>"$out/summary.txt"
        done
      done
      ;;
    staged)
      # The pageable rate is measured once per cache folder: one folder per way of copying.
      for mode in 1 0; do
        step "staged-plan-$mode" 60 env HEADINFER_CUDA_STAGED_PAGEABLE=$mode HEADINFER_CACHE_DIR="$out/cache-$mode" \
          "$h" plan "${model[@]}" --offload all --gpu-memory 16.5GiB --context 4M --host-memory 1TiB
      done
      for mode in 1 0; do
        step "staged-$mode" 150 env HEADINFER_CUDA_STAGED_PAGEABLE=$mode HEADINFER_CACHE_DIR="$out/cache-$mode" "$h" bench "${model[@]}" --context 512K \
          --offload all --fill-above 200K --gpu-memory 16GiB --chunk-size 1024 --decode-tokens 4 --reps 2 -o md
      done
      ;;
    prefill)
      for c in 8192 16384 32768; do
        step "prefill-$c" 150 "$h" bench "${model[@]}" --context 64K,128K --decode-tokens 0 --reps 2 --offload none \
          --chunk-size "$c" --profile -o json
      done
      ;;
    prefill-main)  # the plan's chunk, device-timed phases
      step prefill-main 120 "$h" bench "${model[@]}" --context 16K,64K,128K --decode-tokens 0 --reps 2 --offload none \
        --profile -o json
      ;;
    clocks)  # the SM clock and power while prefill and the attention bench run (queried, not set)
      for what in prefill attn; do
        nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.max.sm,power.draw,power.limit,temperature.gpu,utilization.gpu \
          --format=csv,noheader,nounits -lms 200 >"$out/clocks-$what.csv" 2>&1 &
        smi=$!
        if [ "$what" = prefill ]; then
          step clocks-prefill 120 "$h" bench "${model[@]}" --context 128K --decode-tokens 0 --reps 2 --offload none -o json
        else
          step clocks-attn 120 "$bin/cuda_attention" --quick
        fi
        kill "$smi" 2>/dev/null
        wait "$smi" 2>/dev/null
        # While busy (utilization >= 90%): SM clock and power, mean and range.
        awk -F', *' -v w="$what" '$7 >= 90 { n++; c += $2; p += $4; if (!mn || $2 < mn) mn = $2; if ($2 > mx) mx = $2;
            max = $3; lim = $5 } END { if (n) printf "clocks-%s: %d samples busy, SM clock mean %.0f MHz (%d-%d, max %d), power mean %.0f W of %.0f\n",
            w, n, c / n, mn, mx, max, p / n, lim }' "$out/clocks-$what.csv" | tee -a "$out/summary.txt"
      done
      grep -h 'TFLOP/s' "$out/clocks-attn.log" | head -12 >>"$out/summary.txt"
      ;;
    bf16-rows)  # GEMM inputs in the weight dtype: HF parity with it on
      step bf16-rows-parity 300 env HEADINFER_CUDA_BF16_ROWS=1 python3 scripts/reference/hf_parity.py \
        -m synthetic:llama-3-8b,layers=4 --prompt-tokens 8192 --steps 32 --dtype bf16 --device cuda --backend cuda \
        --headinfer "$h"
      tail -4 "$out/bf16-rows-parity.log" >>"$out/summary.txt"
      ;;
    greedy-ahead)  # decode steps in lock step (1) and queued ahead of the host (0), alternating, twice
      decode_ab decode-lockstep HEADINFER_GREEDY_LOCKSTEP 1 0
      ;;
    qkv-rope)  # decode at 4K and 32K with the RoPE + KV store as its own kernel (0) and in the QKV GEMV (1), alternating, twice
      decode_ab decode-qkv-rope HEADINFER_CUDA_FUSE_QKV_ROPE 0 1
      ;;
    swiglu-fused)  # decode at 4K and 32K with the SwiGLU as its own kernel (0) and in the gate/up GEMV (1), alternating, twice
      decode_ab decode-swiglu-fused HEADINFER_CUDA_FUSE_SWIGLU 0 1
      ;;
    gemv-long)  # decode at 4K and 32K with the O and down GEMVs at (4,1) (the default) and (2,1), alternating, twice
      decode_ab decode-gemv-long HEADINFER_CUDA_GEMV_TUNE_LONG 4,1 2,1
      ;;
    bf16-rows-ab)  # prefill with the GEMM inputs in f32 and in the weight dtype, alternating, twice
      for rep in 1 2; do
        for v in 0 1; do
          step "prefill-bf16-rows$v-$rep" 150 env HEADINFER_CUDA_BF16_ROWS=$v "$h" bench "${model[@]}" \
            --context 16K,64K,128K --decode-tokens 0 --reps 2 --offload none --profile -o json
        done
      done
      ;;
    prefill-vs-hf)  # the acceptance comparison: 5 reps each (medians), the engine as is and with BF16 rows, then HF
      # 16K last: its half-second prefills then run on a GPU already at its working clock.
      for v in 0 1; do
        step "prefill-hf-cmp-rows$v" 150 env HEADINFER_CUDA_BF16_ROWS=$v "$h" bench "${model[@]}" \
          --context 128K,64K,16K --decode-tokens 0 --reps 5 --offload none -o json
      done
      step prefill-hf-cmp-hf 300 python3 bench/peers/hf_bench.py "${model[@]}" --headinfer "$h" \
        --context 128K,64K,16K --decode-tokens 1 --reps 5 --cache dynamic -o json
      grep -h 'prefill' "$out/prefill-hf-cmp-hf.log" | grep -v '^\[' >>"$out/summary.txt"
      python3 bench/tables.py ratio "$out/prefill-hf-cmp-hf.log" "$out/prefill-hf-cmp-rows0.log" \
        "$out/prefill-hf-cmp-rows1.log" >>"$out/summary.txt" 2>&1
      ;;
    gemm)  # sustained GEMM rates, each joined to the clock and power read while it ran
      nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw --format=csv,noheader,nounits -lms 100 \
        >"$out/gemm-clocks.csv" 2>&1 &
      smi=$!
      step gemm 360 "$bin/cuda_gemm"
      kill "$smi" 2>/dev/null
      wait "$smi" 2>/dev/null
      python3 scripts/join_clocks.py "$out/gemm.log" "$out/gemm-clocks.csv" >"$out/gemm-joined.txt" 2>&1
      cat "$out/gemm-joined.txt" >>"$out/summary.txt"
      ;;
    prefill-chunks)  # the plan's chunk (0) against fixed ones, then HF in the same call
      for c in 0 10240 32768 65536 131072; do
        step "prefill-chunk-$c" 120 "$h" bench "${model[@]}" --context 64K,128K --decode-tokens 0 --reps 2 \
          --offload none --chunk-size "$c" -o json
      done
      # The plan's rule with the cap lifted: a 128K prompt as one chunk over one block (a
      # fixed --chunk-size keeps the copy-sized blocks, so 131072 above is not this).
      step prefill-chunk-0-max128k 120 env HEADINFER_RESIDENT_CHUNK_MAX=128K "$h" bench "${model[@]}" \
        --context 128K --decode-tokens 0 --reps 2 --offload none -o json
      step prefill-hf 240 python3 bench/peers/hf_bench.py "${model[@]}" --headinfer "$h" --context 64K,128K \
        --decode-tokens 1 --reps 2 --cache dynamic -o json
      grep -h 'prefill' "$out/prefill-hf.log" | grep -v '^\[' >>"$out/summary.txt"
      python3 bench/tables.py ratio "$out/prefill-hf.log" "$out"/prefill-chunk-*.log >>"$out/summary.txt" 2>&1
      ;;
    ncu)
      m=gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,launch__grid_size,launch__block_size,launch__registers_per_thread
      step ncu-decode4k 240 "$ncu" --clock-control none --metrics "$m" --csv "$h" bench "${model[@]}" --context 4K \
        --decode-tokens 2 --reps 1 --offload none -o json
      step ncu-decode128k 120 "$ncu" --clock-control none --kernel-name regex:attn_decode --launch-count 1 \
        --set full "$bin/cuda_attention" --once
      step ncu-prefill 240 "$ncu" --clock-control none --kernel-name regex:attn_mma_kernel --launch-count 1 \
        --set full "$bin/cuda_attention" --quick
      ;;
    ncu-wide)
      # The 4 x 32-row own block on the engine's chunk x block call (8K queries x one
      # earlier 8K block), its first launch in full, against its rate on causal 16K.
      step ncu-wide 240 env HEADINFER_CUDA_ATTN_PATH=own "$ncu" --clock-control none --kernel-name regex:attn_mma_wide \
        --launch-count 1 --set full --import-source no -o "$out/wide" "$bin/cuda_attention" --quick --own 4x2 --case 4
      step ncu-wide-details 60 "$ncu" -i "$out/wide.ncu-rep" --page details
      step ncu-wide-sass 60 "$ncu" -i "$out/wide.ncu-rep" --page source --csv --print-source sass
      ;;
    hf512) step hf512 240 env CONTEXTS=512K scripts/bench_tables.sh hf-offloaded "$tables" "$h" ;;
    engine | engine-* | hf | hf-dynamic | hf-offloaded | hf-longest | maxctx)
      step "$s" 540 scripts/bench_tables.sh "$s" "$tables" "$h"
      ;;
    repeat)
      step repeat 300 scripts/bench_tables.sh repeat "$tables" "$h"
      step repeat-table 30 python3 bench/tables.py repeat "$tables/repeat-1.json" "$tables/repeat-2.json"
      ;;
    *) echo "gpu_session.sh: unknown step '$s' (expected tests, tests-attention, tests-decode, decode, decode-kernel, decode-main, greedy-ahead, qkv-rope, swiglu-fused, gemv-long, keys-m, decode-splits, decode-splits-128k, gemv-prefetch, gemv-tune, gemv, prefetch, sample, attn, torch-sdpa, q-reuse, cudnn, staged, ncu-wide, prefill, prefill-main, prefill-chunks, bf16-rows, bf16-rows-ab, prefill-vs-hf, gemm, cudnn-sustained, clocks, hf512, repeat, engine[-*], hf[-*], maxctx or ncu)" >&2 ;;
  esac
done
echo "total $(($(date +%s) - start)) s" >>"$out/summary.txt"
# A TABLES folder outside OUT comes back too, as it stands after this call.
if [ "$tables" != "$out/tables" ] && [ -d "$tables" ]; then cp -r "$tables" "$out/tables"; fi
tar -C "$(dirname "$out")" -czf "$out.tgz" "$(basename "$out")" && echo "packed $out.tgz"
