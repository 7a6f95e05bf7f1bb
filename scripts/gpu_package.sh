#!/usr/bin/env bash
# Builds the CUDA preset here and gathers what the GPU machine needs into one folder
# (default .devbin): the GPU test binaries, the CUDA benchmarks, the CLI, and the
# small real-model assets the GPU tests read. Then, on the GPU machine, from a copy of
# this checkout with that folder beside it:  scripts/gpu_check.sh .devbin OUT_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${1:-.devbin}"
shared="${HEADINFER_SHARED:-../shared}"
scripts/build.sh cuda
rm -rf "$dest" && mkdir -p "$dest/assets/models"
for t in build/cuda/tests/test_cuda_*; do [ -x "$t" ] && cp "$t" "$dest/"; done
cp build/cuda/tools/headinfer "$dest/"
for b in build/cuda/bench/*; do [ -x "$b" ] && [ -f "$b" ] && cp "$b" "$dest/"; done
cp -r "$shared/models/stories260K" "$dest/assets/models/" 2>/dev/null || echo "note: $shared/models/stories260K absent; its GPU test will skip"
du -sh "$dest"
