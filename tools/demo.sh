#!/usr/bin/env bash
# Installs what is missing, builds, and runs the main job: the quickstart
# (configs/quickstart.yaml), the exact 2-D gmm teacher distilled into a
# 3-step student with backward distillation and compared with the teacher's
# 25- and 3-step DPM++, forward distillation, SRL and no noise correction on
# one noise bank. Prints the table; runs/quickstart/ holds results.json,
# the samples (NPY) and scatter plots (PNG).
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"${FLASH_JOBS:-2}" >/dev/null

set -x
build/bin/flash --version
build/bin/flash check configs/quickstart.yaml >/dev/null
rm -rf runs/quickstart
build/bin/flash run configs/quickstart.yaml --out runs/quickstart
