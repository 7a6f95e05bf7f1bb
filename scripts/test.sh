#!/usr/bin/env bash
# Builds and runs the whole test suite (CPU build; GPU tests skip without a GPU).
# Set HEADINFER_ASAN=1 to run it again under AddressSanitizer + UBSan.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh cpu
ctest --preset cpu
if [ "${HEADINFER_ASAN:-0}" = 1 ]; then
  scripts/build.sh asan
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --preset asan
fi
