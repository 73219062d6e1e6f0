#!/usr/bin/env bash
# Installs what is missing, builds, and runs the main job: for now, lists
# the plugins and validates the quickstart pipeline.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"${FLASH_JOBS:-2}" >/dev/null

set -x
build/bin/flash --version
build/bin/flash plugins
build/bin/flash check configs/quickstart.yaml
