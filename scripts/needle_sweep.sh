#!/usr/bin/env bash
# Runs `headinfer demo` at the 11 depths 0, 0.1, ..., 1 for one context and prints one
# line per depth (result, prefill time) and a total: the needle issue's acceptance sweep.
#   scripts/needle_sweep.sh HEADINFER CONTEXT [demo options...]
# e.g. scripts/needle_sweep.sh build/cuda/tools/headinfer 1M -m synthetic:needle,dtype=bf16 --offload all
set -uo pipefail
bin="$1" ctx="$2"
shift 2
found=0
for d in 0 0.1 0.2 0.3 0.4 0.5 0.6 0.7 0.8 0.9 1; do
  log=$("$bin" demo --context "$ctx" --depth "$d" "$@" 2>&1)
  result=$(grep -m1 '^result' <<<"$log" | sed 's/^result *//')
  stats=$(grep -m1 'stats:' <<<"$log" | grep -oE 'prefill [^|]*' | head -1)
  [[ "$result" == FOUND* ]] && found=$((found + 1))
  printf 'context %s depth %-3s %-28s %s\n' "$ctx" "$d" "${result:-ERROR: $(tail -n1 <<<"$log")}" "$stats"
done
echo "context $ctx ($*): $found/11 found"
[ "$found" = 11 ]
