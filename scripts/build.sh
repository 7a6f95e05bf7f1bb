#!/usr/bin/env bash
# Installs what is missing, then configures and builds a preset (default: cpu).
set -euo pipefail
cd "$(dirname "$0")/.."
preset="${1:-cpu}"
scripts/setup.sh
if [ "$preset" = cuda ]; then
  # cuDNN's fused attention is built from its header-only frontend, which ships in a
  # PyPI wheel; without it the build still succeeds (own attention kernels only).
  purelib=$(python3 -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" 2>/dev/null || true)
  if [ -n "$purelib" ] && [ ! -f "$purelib/include/cudnn_frontend.h" ]; then
    python3 -m pip install -q nvidia-cudnn-frontend==1.32.0 || echo "note: cuDNN frontend not installed; own kernels only"
  fi
  # cuobjdump and the nvdisasm it runs (not in every toolkit install) for the SASS check
  # of the warpgroup-MMA kernels (tests/sass); without them that test reports itself skipped.
  if [ -n "$purelib" ] && ! command -v cuobjdump >/dev/null && [ ! -x /usr/local/cuda/bin/cuobjdump ] &&
    ! ls "$purelib"/nvidia/cu*/bin/nvdisasm >/dev/null 2>&1; then
    python3 -m pip install -q nvidia-cuda-cuobjdump==13.5.37 nvidia-cuda-nvdisasm==13.5.37 ||
      echo "note: cuobjdump not installed; the SASS check will skip"
  fi
fi
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" -j "$(nproc)"
