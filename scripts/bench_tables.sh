#!/usr/bin/env bash
# The runs behind docs/benchmarks.md's tables (memory, max context, latency against
# context), on a GPU machine, in parts that each take a few minutes:
#
#   scripts/bench_tables.sh engine OUT [HEADINFER]   # headinfer: all resident, --offload all, 24 GiB budget
#                                                    # (or one of them: engine-resident, engine-all, engine-24g)
#   scripts/bench_tables.sh hf     OUT [HEADINFER]   # HF transformers: GPU cache and offloaded cache
#                                                    # (or one of them: hf-dynamic, hf-offloaded, hf-longest)
#   scripts/bench_tables.sh maxctx OUT [HEADINFER]   # longest context under 24 GiB, four models
#   scripts/bench_tables.sh repeat OUT [HEADINFER]   # one headinfer command run twice (do they agree?)
#   scripts/bench_tables.sh tables OUT               # the markdown tables from OUT/*.json
#
# Each part writes OUT/<part>-<run>.json (rows) and appends the exact commands to
# OUT/commands.txt. Contexts up to 128K are real prefills; longer ones are synthetic
# KV fills (random K/V, no prefill: decode and memory only), for both engines. The
# longest context is what the host RAM allows with every slab offloaded: `max` in
# headinfer's --context, found by its plan in the benchmarking process itself; the
# other configurations run that same context (read from OUT/engine-all.json), unless
# LONGEST is set. CONTEXTS overrides a part's list of contexts (a re-run of some).
# HF runs one process per context: one killed for host memory (the OOM killer) costs
# that row alone, which then says so.
set -uo pipefail
cd "$(dirname "$0")/.."
part="${1:?part: engine, hf, maxctx, repeat or tables}"
out="${2:?output directory}"
bin="${3:-build/cuda/tools/headinfer}"
mkdir -p "$out"
model="${MODEL:-synthetic:llama-3-8b}"

run() {  # run NAME COMMAND...: rows into OUT/NAME.json, stderr into OUT/NAME.log
  local name="$1"
  shift
  echo "$*" >>"$out/commands.txt"
  echo "[$(date +%T)] $name: $*" >&2
  local rc=0
  "$@" >"$out/$name.json" 2>"$out/$name.log" || rc=$?
  [ "$rc" = 0 ] || echo "[$(date +%T)] $name: exit $rc (see $out/$name.log)" >&2
  return "$rc"
}

oom_kills() {  # the cgroup's count of OOM kills so far (0 where unknown)
  awk '$1 == "oom_kill" { print $2; found = 1 } END { if (!found) print 0 }' /sys/fs/cgroup/memory.events 2>/dev/null ||
    echo 0
}

hf_run() {  # hf_run NAME KIND CONTEXTS DECODE REPS: one hf_bench process per context
  local name="$1" kind="$2" contexts="$3" decode="$4" reps="$5" ctx
  for ctx in ${contexts//,/ }; do
    local file="$name-$ctx" before rc=0
    before=$(oom_kills)
    run "$file" python3 bench/peers/hf_bench.py -m "$model" --headinfer "$bin" --fill-above 128K -o json \
      --context "$ctx" --decode-tokens "$decode" --reps "$reps" --cache "$kind" || rc=$?
    if [ ! -s "$out/$file.json" ]; then  # no rows: the process died; record why as the row
      local why="exited with status $rc without rows (see $file.log)"
      [ "$rc" = 137 ] && why="killed (SIGKILL, exit 137) without rows (see $file.log)"
      [ "$(oom_kills)" -gt "$before" ] && why="killed by the OOM killer (exit $rc): out of host memory"
      python3 - "$out/$file.json" "$model" "$kind" "$ctx" "$why" <<'PY'
import json, sys
path, model, kind, ctx, why = sys.argv[1:]
n = int(ctx[:-1]) << {"K": 10, "M": 20}[ctx[-1].upper()] if ctx[-1].upper() in "KM" else int(ctx)
row = dict(engine=f"hf-transformers {kind}", model=model, offload="none" if kind == "dynamic" else "offloaded",
           context=n, fill="synthetic" if n > 128 * 1024 else "prefill", status=why)
json.dump([row], open(path, "w"), indent=1)
PY
    fi
  done
}

longest() {  # the longest context of the --offload all run, unless LONGEST is set
  if [ -n "${LONGEST:-}" ]; then echo "$LONGEST"; return; fi
  python3 -c 'import json,sys; r=[r for r in json.load(open(sys.argv[1])) if r.get("max_context_limit")]; print(r[0]["context"] if r else "")' \
    "$out/engine-all.json" 2>/dev/null
}

common=(-m "$model" --decode-tokens 4 --reps 2 --fill-above 128K -o json)
case "$part" in
  engine | engine-resident | engine-all | engine-24g)
    if [ "$part" = engine ] || [ "$part" = engine-all ]; then
      run engine-all "$bin" bench "${common[@]}" --context "${CONTEXTS:-16K,64K,128K,256K,512K,max}" --offload all
      run engine-all-small "$bin" bench "${common[@]}" --context 512K --offload all --chunk-size 1024
      # Its own label: the same configuration as engine-all but for the chunk.
      python3 -c 'import json,sys; p=sys.argv[1]; d=json.load(open(p)); [r.update(label="headinfer all, chunk 1024") for r in d]; json.dump(d, open(p,"w"), indent=1)' \
        "$out/engine-all-small.json" 2>/dev/null
    fi
    if [ "$part" = engine ] || [ "$part" = engine-resident ]; then
      # All resident up to the longest context: where the KV does not fit, the row says so.
      max=$(longest)
      run engine-resident "$bin" bench "${common[@]}" --context "${CONTEXTS:-16K,64K,128K,512K${max:+,$max}}" \
        --offload none --profile
    fi
    if [ "$part" = engine ] || [ "$part" = engine-24g ]; then
      run engine-24g "$bin" bench "${common[@]}" --context "${CONTEXTS:-16K,64K,128K,256K,512K,max}" --gpu-memory 24GiB --profile
      # A budget that holds every slab at 128K: the plan keeps all resident (decode as all-resident).
      run engine-40g "$bin" bench "${common[@]}" --context 128K --gpu-memory 40GiB
    fi
    ;;
  hf | hf-dynamic | hf-offloaded | hf-longest)
    if [ "$part" = hf ] || [ "$part" = hf-dynamic ]; then
      hf_run hf-dynamic dynamic "${CONTEXTS:-16K,64K,128K,512K}" 4 2
    fi
    if [ "$part" = hf ] || [ "$part" = hf-offloaded ]; then
      hf_run hf-offloaded offloaded "${CONTEXTS:-16K,64K,128K,256K,512K}" 2 1
    fi
    if [ "$part" = hf ] || [ "$part" = hf-longest ]; then
      max=$(longest)
      [ -n "$max" ] || { echo "bench_tables.sh: hf-longest needs OUT/engine-all.json with a max row, or LONGEST" >&2; exit 2; }
      hf_run hf-longest-dynamic dynamic "$max" 1 1
      hf_run hf-longest-offloaded offloaded "$max" 1 1
    fi
    ;;
  maxctx)
    for m in ${MODELS:-llama-3-8b llama-2-7b mistral-7b qwen2.5-7b}; do
      run "maxctx-$m" "$bin" bench -m "synthetic:$m" --max-context --gpu-memory 24GiB --decode-tokens 2 --reps 1 -o json
    done
    ;;
  repeat)
    # Resident and offloaded heads both (128K under 24 GiB offloads some), real prefills;
    # 5 repetitions: 3 understated the run-to-run spread of a 7 ms decode step.
    for i in 1 2; do
      run "repeat-$i" "$bin" bench -m "$model" --context 16K,128K --gpu-memory 24GiB --decode-tokens 16 --reps 5 -o json
    done
    ;;
  tables)
    shopt -s nullglob
    rows=("$out"/engine-*.json "$out"/hf-*.json)
    echo "## memory"; python3 bench/tables.py memory "${rows[@]}"
    maxctx=("$out"/maxctx-*.json)
    if [ ${#maxctx[@]} -gt 0 ]; then echo; echo "## max context (24 GiB)"; python3 bench/tables.py maxctx "${maxctx[@]}"; fi
    echo; echo "## latency"; python3 bench/tables.py latency "${rows[@]}"
    if [ -f "$out/repeat-1.json" ] && [ -f "$out/repeat-2.json" ]; then
      echo; echo "## the same command twice"; python3 bench/tables.py repeat "$out/repeat-1.json" "$out/repeat-2.json"
    fi
    ;;
  *)
    echo "bench_tables.sh: unknown part '$part' (expected engine, engine-resident, engine-all, engine-24g, hf, hf-dynamic, hf-offloaded, hf-longest, maxctx, repeat or tables)" >&2
    exit 2
    ;;
esac
