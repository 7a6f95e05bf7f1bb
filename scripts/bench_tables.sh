#!/usr/bin/env bash
# The runs behind docs/benchmarks.md's tables (memory, max context, latency against
# context), on a GPU machine, in parts that each take a few minutes:
#
#   scripts/bench_tables.sh engine OUT [HEADINFER]   # headinfer: all resident, --offload all, 24 GiB budget
#                                                    # (or one of them: engine-resident, engine-all, engine-24g)
#   scripts/bench_tables.sh hf     OUT [HEADINFER]   # HF transformers: GPU cache and offloaded cache
#                                                    # (or one of them: hf-dynamic, hf-offloaded, hf-longest)
#   scripts/bench_tables.sh maxctx OUT [HEADINFER]   # longest context under 24 GiB, four models
#   scripts/bench_tables.sh tables OUT               # the markdown tables from OUT/*.json
#
# Each part writes OUT/<part>-<run>.json (rows) and appends the exact commands to
# OUT/commands.txt. Contexts up to 128K are real prefills; longer ones are synthetic
# KV fills (random K/V, no prefill: decode and memory only), for both engines. The
# longest context is what the host RAM allows with every slab offloaded (the plan's
# figure, `headinfer bench --max-context`), unless LONGEST is set.
set -uo pipefail
cd "$(dirname "$0")/.."
part="${1:?part: engine, hf, maxctx or tables}"
out="${2:?output directory}"
bin="${3:-build/cuda/tools/headinfer}"
mkdir -p "$out"
model="${MODEL:-synthetic:llama-3-8b}"

run() {  # run NAME COMMAND...: rows into OUT/NAME.json, stderr into OUT/NAME.log
  local name="$1"
  shift
  echo "$*" >>"$out/commands.txt"
  echo "[$(date +%T)] $name: $*" >&2
  "$@" >"$out/$name.json" 2>"$out/$name.log" || echo "[$(date +%T)] $name: exit $? (see $out/$name.log)" >&2
}

longest() {  # the longest context with every slab offloaded, by plan (host RAM limits it)
  if [ -n "${LONGEST:-}" ]; then echo "$LONGEST"; return; fi
  # The plan refuses a context whose offloaded KV exceeds the host memory available:
  # bisect on whole 64K steps.
  local lo=131072 hi=$((64 << 20))
  while [ $((hi - lo)) -gt 65536 ]; do
    local mid=$(((lo + hi) / 2 / 65536 * 65536))
    if "$bin" plan -m "$model" --offload all --context "$mid" >/dev/null 2>&1; then lo=$mid; else hi=$mid; fi
  done
  echo "$lo"
}

common=(-m "$model" --decode-tokens 4 --reps 2 --fill-above 128K -o json)
case "$part" in
  engine | engine-resident | engine-all | engine-24g)
    max=$(longest)
    if [ "$part" = engine ] || [ "$part" = engine-resident ]; then
      run engine-resident "$bin" bench "${common[@]}" --context 16K,64K,128K,512K --offload none --profile
    fi
    if [ "$part" = engine ] || [ "$part" = engine-all ]; then
      run engine-all "$bin" bench "${common[@]}" --context 16K,64K,128K,256K,512K,"$max" --offload all
      run engine-all-small "$bin" bench "${common[@]}" --context 512K --offload all --chunk-size 1024
    fi
    if [ "$part" = engine ] || [ "$part" = engine-24g ]; then
      run engine-24g "$bin" bench "${common[@]}" --context 16K,64K,128K,256K,512K,"$max" --gpu-memory 24GiB --profile
      # A budget that holds every slab at 128K: the plan keeps all resident (decode as all-resident).
      run engine-40g "$bin" bench "${common[@]}" --context 128K --gpu-memory 40GiB
    fi
    ;;
  hf | hf-dynamic | hf-offloaded | hf-longest)
    hf=(-m "$model" --headinfer "$bin" --fill-above 128K -o json)
    if [ "$part" = hf ] || [ "$part" = hf-dynamic ]; then
      run hf-dynamic python3 bench/peers/hf_bench.py "${hf[@]}" --context 16K,64K,128K,512K \
        --decode-tokens 4 --reps 2 --cache dynamic
    fi
    if [ "$part" = hf ] || [ "$part" = hf-offloaded ]; then
      run hf-offloaded python3 bench/peers/hf_bench.py "${hf[@]}" --context 16K,64K,128K,256K,512K \
        --decode-tokens 2 --reps 1 --cache offloaded
    fi
    if [ "$part" = hf ] || [ "$part" = hf-longest ]; then
      run hf-longest python3 bench/peers/hf_bench.py "${hf[@]}" --context "$(longest)" \
        --decode-tokens 1 --reps 1 --cache dynamic,offloaded
    fi
    ;;
  maxctx)
    for m in llama-3-8b llama-2-7b mistral-7b qwen2.5-7b; do
      run "maxctx-$m" "$bin" bench -m "synthetic:$m" --max-context --gpu-memory 24GiB --decode-tokens 2 --reps 1 -o json
    done
    ;;
  tables)
    shopt -s nullglob
    rows=("$out"/engine-*.json "$out"/hf-*.json)
    echo "## memory"; python3 bench/tables.py memory "${rows[@]}"
    echo; echo "## max context (24 GiB)"; python3 bench/tables.py maxctx "$out"/maxctx-*.json
    echo; echo "## latency"; python3 bench/tables.py latency "${rows[@]}"
    ;;
  *)
    echo "bench_tables.sh: unknown part '$part' (expected engine, engine-resident, engine-all, engine-24g, hf, hf-dynamic, hf-offloaded, hf-longest, maxctx or tables)" >&2
    exit 2
    ;;
esac
