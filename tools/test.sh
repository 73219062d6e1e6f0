#!/usr/bin/env bash
# The whole test suite: a warnings-as-errors Release build with every unit
# and integration test, then an AddressSanitizer/UBSan build running the
# unit tests (at -O1: sanitizer checks stay, the suites stay fast), then
# each libFuzzer harness for FLASH_FUZZ_SECONDS (30) under ASan/UBSan.
# Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/setup.sh
jobs=${FLASH_JOBS:-2}

echo "== release build (build/)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DFLASH_WERROR=ON >/dev/null
cmake --build build -j"$jobs" >/dev/null
(cd build && ctest -j2 --output-on-failure)

echo "== sanitizer build (build-asan/): unit tests"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_FLAGS_DEBUG="-O1 -g" -DFLASH_SANITIZE=ON -DFLASH_WERROR=ON >/dev/null
cmake --build build-asan -j"$jobs" >/dev/null
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest -j2 -L unit --output-on-failure)

echo "== fuzzing (build-fuzz/): each reader for ${FLASH_FUZZ_SECONDS:-30} s"
bash tools/fuzz.sh "${FLASH_FUZZ_SECONDS:-30}"
