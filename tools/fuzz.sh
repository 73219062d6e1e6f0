#!/usr/bin/env bash
# Builds the libFuzzer harnesses (tests/fuzz/) with clang, ASan and UBSan in
# build-fuzz/ and runs each for SECONDS (default 30) on its seed corpus
# (tests/fuzz/corpus/<reader>/, read only; new inputs go to a scratch
# folder). Exits non-zero on the first finding, leaving the crashing input
# in build-fuzz/findings/.
#   bash tools/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
root=$PWD
jobs=${FLASH_JOBS:-2}

command -v clang >/dev/null || { echo "fuzz: clang is missing (bash tools/setup.sh installs it)" >&2; exit 1; }
cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFLASH_FUZZ=ON \
  -DFLASH_CUDA=OFF -DFLASH_NATIVE=OFF -DBUILD_TESTING=OFF >/dev/null
cmake --build build-fuzz -j"$jobs" >/dev/null
mkdir -p build-fuzz/findings
for h in config npy idx safetensors checkpoint; do
  scratch=$(mktemp -d)
  log=build-fuzz/findings/$h.log
  # config seeds name their extends bases relative to tests/data/config
  (cd tests/data/config && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$root/build-fuzz/fuzz/fuzz_$h" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$root/build-fuzz/findings/$h-" "$scratch" "$root/tests/fuzz/corpus/$h" >"$root/$log" 2>&1) || {
    echo "fuzz: $h found a failure; see $log and build-fuzz/findings/$h-*" >&2
    tail -30 "$log" >&2
    rm -rf "$scratch"
    exit 1
  }
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo "?")
  echo "fuzz: $h: ${seconds}s, $runs executions, $cov coverage edges, no finding"
  rm -rf "$scratch"
done
