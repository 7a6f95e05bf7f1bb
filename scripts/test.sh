#!/usr/bin/env bash
# Builds and runs the whole test suite (CPU build; GPU tests skip without a GPU).
# Set HEADINFER_ASAN=1 to run it again under AddressSanitizer + UBSan, and
# HEADINFER_CUDA_BUILD=1 to also build the cuda preset (needs the CUDA toolkit) and run
# its suite: on a machine without a GPU the GPU tests report themselves skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh cpu
ctest --preset cpu
if [ "${HEADINFER_ASAN:-0}" = 1 ]; then
  scripts/build.sh asan
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --preset asan
fi
if [ "${HEADINFER_CUDA_BUILD:-0}" = 1 ]; then
  scripts/build.sh cuda
  ctest --preset cuda -j 2
fi
