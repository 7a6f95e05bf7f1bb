#!/usr/bin/env bash
# Installs what is missing, then configures and builds a preset (default: cpu).
set -euo pipefail
cd "$(dirname "$0")/.."
preset="${1:-cpu}"
scripts/setup.sh
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" -j "$(nproc)"
