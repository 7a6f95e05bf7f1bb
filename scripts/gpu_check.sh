#!/usr/bin/env bash
# On the GPU machine: runs the GPU tests, the HF transformers reference for
# stories260K, and the CUDA benchmarks from a folder made by scripts/gpu_package.sh.
# Results go to OUT_DIR; the summary is printed last.
set -uo pipefail
cd "$(dirname "$0")/.."
bin="${1:-.devbin}"
out="${2:-gpu-results}"
mkdir -p "$out"
export HEADINFER_SHARED="${HEADINFER_SHARED:-$bin/assets}" HEADINFER_FIXTURES="$PWD/tests/fixtures"
# On the GPU machine cuDNN is present: a fallback to the own kernels is a failure there.
export HEADINFER_EXPECT_CUDNN="${HEADINFER_EXPECT_CUDNN:-1}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
summary=""
for t in "$bin"/test_cuda_*; do
  [ -x "$t" ] || continue
  name=$(basename "$t")
  "$t" --gtest_output="xml:$out/$name.xml" >"$out/$name.log" 2>&1
  rc=$?
  summary+="$name: rc=$rc $(grep -E '^\[  (PASSED|FAILED|SKIPPED) ' "$out/$name.log" | tr '\n' ' ')"$'\n'
done
if [ -d "$HEADINFER_SHARED/models/stories260K" ]; then
  python3 scripts/reference/stories_greedy.py "$HEADINFER_SHARED/models/stories260K" "$out/stories260K_hf_gpu.json" \
    >"$out/stories_hf.log" 2>&1
  same=$(python3 -c "import json,sys; a=json.load(open('$out/stories260K_hf_gpu.json'))['generated']; b=json.load(open('tests/fixtures/stories260K_greedy.json'))['generated']; print('equal' if a==b else 'DIFFERENT')" 2>&1)
  summary+="HF transformers on the GPU vs the committed stories260K fixture: $same"$'\n'
fi
for b in "$bin"/cuda_*; do
  [ -x "$b" ] || continue
  "$b" >"$out/$(basename "$b").txt" 2>&1
  summary+="--- $(basename "$b") (rc=$?)"$'\n'"$(tail -n 25 "$out/$(basename "$b").txt")"$'\n'
done
printf '%s' "$summary" | tee "$out/summary.txt"
