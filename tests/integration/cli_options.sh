#!/usr/bin/env bash
# The option layer every subcommand parses with (tools/flash/options.h):
# --help lists each option a command declares; an unknown option exits 2
# naming the nearest one; a missing value, a bad integer or choice and a
# missing CONFIG exit 2; --device D is --set device=D, the pipeline's one
# top-level `device:` key; --name=VALUE works as --name VALUE.
# No plugin is needed: FLASH_PLUGIN_DIR points at an empty directory.
# Env (set by CTest): FLASH.
: "${FLASH:?}"
source "${BASH_SOURCE%/*}/common.bash"
cd "$tmp"
mkdir empty
export FLASH_PLUGIN_DIR=$tmp/empty

# every declared option, per command: each appears in its --help
declare -A options=(
  [plugins]="--kind --config"
  [check]="--set --device"
  [train]="--set --out --resume --threads --quiet --device"
  [distill]="--set --out --resume --until --device"
  [sample]="--set --ckpt --weights --batch --noise --labels --n --seed --device --out --grid"
  [eval]="--set --samples --labels --real --seed --device --out --grid"
  [run]="--set --out --resume --device"
  [sweep]="--out --jobs --resume --dry-run --emit --ranks --gpus-per-rank --run"
  [bench]="--set --threads --batch --repeats --warmup --seed --out --distill --profile --device"
  [report]="--baseline --out"
)
for cmd in "${!options[@]}"; do
  for h in --help -h; do
    expect 0 "$cmd $h" -- "$cmd" "$h"
    grep -q "^usage: flash $cmd" out || fail "$cmd $h: no usage line: $(cat out)"
    for o in ${options[$cmd]}; do
      grep -qE -- "^  $o( |$)" out || fail "$cmd --help does not list $o: $(cat out)"
    done
    grep -qE -- '^  -h, --help' out || fail "$cmd --help does not list -h, --help"
  done
  # --help wins over anything else on the line
  expect 0 "$cmd --oot --help" -- "$cmd" --oot --help
done

printf 'seed: 1\n' >pipeline.yaml

# unknown options: exit 2 and the nearest declared one
expect 2 "run --oot" "^flash run: unknown option '--oot' \(did you mean '--out'\?\)" -- run pipeline.yaml --oot x
expect 2 "sweep --job" "unknown option '--job' \(did you mean '--jobs'\?\)" -- sweep s.yaml --job 2
expect 2 "check --devise" "unknown option '--devise' \(did you mean '--device'\?\)" -- check pipeline.yaml --devise cuda
expect 2 "train --zzzzzz" "unknown option '--zzzzzz'" -- train pipeline.yaml --zzzzzz

# missing values, bad integers and choices, positional arguments
for cmd in train distill run sample eval check bench; do
  expect 2 "$cmd --set without a value" "flash $cmd: --set needs a value" -- "$cmd" pipeline.yaml --set
  expect 2 "$cmd --device gpu" "flash $cmd: --device: expected cpu or cuda, got 'gpu'" -- "$cmd" pipeline.yaml --device gpu
done
expect 2 "run --out without a value" "flash run: --out needs a value" -- run pipeline.yaml --out
expect 2 "sweep --jobs 0" "--jobs: expected an integer in \[1, 256\], got '0'" -- sweep s.yaml --jobs 0
expect 2 "sweep --jobs x" "--jobs: expected an integer" -- sweep s.yaml --jobs x
expect 2 "sweep --emit pbs" "--emit: expected slurm, got 'pbs'" -- sweep s.yaml --emit pbs
expect 2 "distill --until 0" "--until: expected an integer >= 1" -- distill pipeline.yaml --until 0
expect 2 "train --threads 5000" "--threads: expected an integer in \[1, 1024\]" -- train pipeline.yaml --threads 5000
expect 2 "sample --weights" "--weights: expected ema or raw, got 'best'" -- sample pipeline.yaml --weights best --out x.npy
expect 2 "sample without --out" "missing --out FILE" -- sample pipeline.yaml
expect 2 "--resume=1" "--resume takes no value" -- run pipeline.yaml --resume=1
expect 2 "no CONFIG" "flash run: missing CONFIG" -- run
expect 2 "no SWEEP.yaml" "flash sweep: missing SWEEP.yaml" -- sweep
expect 2 "no RUNDIR" "flash report: missing RUNDIR" -- report
expect 2 "two configs" "unexpected argument 'other.yaml'" -- check pipeline.yaml other.yaml
expect 2 "eval without samples" "give either --samples FILE or --real N" -- eval pipeline.yaml

# --device D is the top-level device key, as --set device=D is
expect 0 "check --device cuda" -- check pipeline.yaml --device cuda
grep -qx 'device: cuda' out || fail "--device cuda is not the top-level device: $(cat out)"
expect 0 "check --set device=cuda" -- check pipeline.yaml --set device=cuda
grep -qx 'device: cuda' out || fail "--set device=cuda: $(cat out)"
# in order with --set: the last one wins
expect 0 "--device then --set" -- check pipeline.yaml --device cuda --set device=cpu
grep -qx 'device: cpu' out || fail "--set after --device did not win: $(cat out)"
expect 0 "--name=value" -- check pipeline.yaml --device=cuda --set=threads=3
grep -qx 'device: cuda' out && grep -qx 'threads: 3' out || fail "--name=value: $(cat out)"
# after --, a dash is a positional argument
expect 2 "-- ends the options" "unexpected argument '--set'" -- check pipeline.yaml -- --set
echo "ok: the option layer"
