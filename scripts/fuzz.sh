#!/usr/bin/env bash
# Builds the libFuzzer targets (preset `fuzz`, clang + ASan/UBSan) and runs each for a
# bounded time over the committed seed corpus. Usage: scripts/fuzz.sh [seconds-per-target]
# New inputs found go to build/fuzz/corpus/<target>/ (the committed seeds stay as they
# are); crashes are written to fuzz/artifacts/ and make the script fail.
set -euo pipefail
seconds="${1:-60}"
cd "$(dirname "$0")/.."
cmake --preset fuzz >/dev/null
cmake --build build/fuzz -j"$(nproc)" --target fuzz_safetensors fuzz_gguf
mkdir -p fuzz/artifacts
status=0
for target in safetensors gguf; do
  work="build/fuzz/corpus/${target}"
  mkdir -p "$work"
  echo "== fuzz_${target}: ${seconds}s"
  if ! "build/fuzz/fuzz/fuzz_${target}" -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=1024 \
      -artifact_prefix="fuzz/artifacts/${target}-" -print_final_stats=1 "$work" "fuzz/corpus/${target}"; then
    echo "fuzz_${target}: FAILED (see fuzz/artifacts/)"
    status=1
  fi
done
exit $status
