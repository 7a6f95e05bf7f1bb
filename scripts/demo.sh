#!/usr/bin/env bash
# The main job on a built-in default, no download: builds, then runs `headinfer demo`
# on the constructed needle model (a synthetic two-layer Llama) with a 4096-token
# haystack: prints the plan, the prefill progress, the 5-digit key it retrieves and
# the stats line. Extra arguments go to `headinfer demo` (e.g. --context 64K
# --depth 0.3); for free text use build/cpu/tools/headinfer generate (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh cpu
exec build/cpu/tools/headinfer demo --context 4K "$@"
