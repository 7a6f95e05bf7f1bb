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
# Stripped: each binary carries every kernel, so the folder is large otherwise.
for t in build/cuda/tests/test_cuda_*; do [ -x "$t" ] && [ -f "$t" ] && strip -o "$dest/$(basename "$t")" "$t"; done
strip -o "$dest/headinfer" build/cuda/tools/headinfer
for b in build/cuda/bench/*; do [ -x "$b" ] && [ -f "$b" ] && strip -o "$dest/$(basename "$b")" "$b"; done
cp -r "$shared/models/stories260K" "$dest/assets/models/" 2>/dev/null || echo "note: $shared/models/stories260K absent; its GPU test will skip"
du -sh "$dest"
# One compressed file as well, for a working copy with a size limit:
#   mkdir -p .devbin && tar -C .devbin -xJf .devpkg/devbin.tar.xz
mkdir -p .devpkg && tar -C "$dest" -cJf .devpkg/devbin.tar.xz . && du -sh .devpkg/devbin.tar.xz
