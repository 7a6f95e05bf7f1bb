#!/usr/bin/env bash
# The main job on a built-in default: a synthetic Llama-3.2-1B-shaped model (random
# BF16 weights, no download), a 4096-token prompt prefilled in chunks, 32 decoded
# tokens, then the stats line. Extra arguments go to `headinfer generate`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh cpu
exec build/cpu/tools/headinfer generate -m synthetic:llama-3.2-1b --prompt-tokens 4096 -n 32 --temp 0 "$@"
