#!/usr/bin/env bash
# A misspelt key at every level of a pipeline (the top level, train:, run:,
# run.variants[i], teacher_train:, a plugin slot, metrics[i]) stops every
# command that reads the file with exit 2, file:line and a did-you-mean,
# before any work; `flash check --for COMMAND` says the same; keys that
# moved say where; x- blocks are free-form.
# Env (set by CTest): FLASH, FLASH_SOURCE_DIR.
: "${FLASH:?}" "${FLASH_SOURCE_DIR:?}"
source "${BASH_SOURCE%/*}/common.bash"
cd "$tmp"
cp "$FLASH_SOURCE_DIR/configs/quickstart.yaml" base.yaml

# name | YAML added to a file that extends base.yaml | line of the bad key | the suggestion
cases=(
  "top|seeed: 1|2|seed"
  "train|train: {stpes: 3}|2|steps"
  "run|run: {sampels: 100}|2|samples"
  "variant|run: {variants: [{name: a, modle: teacher}]}|2|model"
  "teacher_train|teacher_train:\n  strategy: {plugin: denoise}\n  trian: {steps: 1}|4|train"
  "slot|sampler: {stesp: 3}|2|steps"
  "metric|metrics:\n  - {plugin: gmm_nll, weights: [1], means: [[0, 0]], stds: [1]}\n  - {plugin: sliced_wasserstein, projection: 8}|4|projections"
)
commands=(check train distill run sample eval)
args_of() {
  case $1 in
    sample) echo "--out $tmp/x.npy" ;;
    eval) echo "--real 4" ;;
    run | distill | train) echo "--out $tmp/out_$1" ;;
  esac
}
for c in "${cases[@]}"; do
  IFS='|' read -r name yaml line near <<<"$c"
  printf "extends: base.yaml\n$yaml\n" >"$name.yaml"
  for cmd in "${commands[@]}"; do
    # shellcheck disable=SC2046
    expect 2 "$name: flash $cmd" "$name\.yaml:$line:[0-9]+" "did you mean '$near'" -- $cmd "$name.yaml" $(args_of "$cmd")
    [[ ! -e $tmp/out_$cmd && ! -e $tmp/x.npy ]] || fail "$name: flash $cmd wrote outputs for a bad config"
  done
  # flash check --for CMD agrees with CMD
  for cmd in train distill run sample eval; do
    expect 2 "$name: flash check --for $cmd" "$name\.yaml:$line:[0-9]+" -- check "$name.yaml" --for "$cmd"
  done
done

# the same through --set and inside a variant's set:
expect 2 "--set" "--set" "did you mean 'steps'" -- check base.yaml --set train.stpes=3
printf 'extends: base.yaml\nrun:\n  variants:\n    - {name: a, set: ["sampler.stesp=3"]}\n' >variant_set.yaml
expect 2 "variant set" "variant_set\.yaml:4:[0-9]+" "run variant 'a'" "did you mean 'steps'" -- check variant_set.yaml
expect 2 "variant set (run)" "variant_set\.yaml:4:[0-9]+" "did you mean 'steps'" -- run variant_set.yaml --out "$tmp/o"

# keys that moved say where
printf 'extends: base.yaml\ndistill: {steps: 3}\n' >moved.yaml
expect 2 "distill: moved" "moved\.yaml:2:[0-9]+" 'is now `train:`' -- distill moved.yaml --out "$tmp/o"
expect 2 "distill: moved (check)" "moved\.yaml:2:[0-9]+" 'is now `train:`' -- check moved.yaml
printf 'extends: base.yaml\ntarget: {k: 3}\n' >target.yaml
expect 2 "target: moved" "target\.yaml:2:[0-9]+" 'strategy.target' -- check target.yaml --for distill
printf 'extends: base.yaml\ndistil: {steps: 3}\n' >distil.yaml
expect 2 "distil: misspelt and moved" "did you mean 'train'" -- check distil.yaml
printf 'extends: base.yaml\ntrain: {device: cuda}\n' >train_device.yaml
expect 2 "train.device moved" "top-level \`device:\`" -- check train_device.yaml

# x- blocks hold anchors and are never read
printf 'extends: base.yaml\nx-notes: {anything: [1, 2], goes: here}\n' >free.yaml
expect 0 "x- block" -- check free.yaml

# a component's keys, with types and defaults
expect 0 "plugins ddim" -- plugins ddim
grep -qE '^  steps +int +25$' out || fail "plugins ddim: $(cat out)"
grep -qE '^  timestep_spacing +one of: leading, trailing, linspace +leading$' out || fail "plugins ddim: $(cat out)"
expect 0 "plugins backward" -- plugins backward
grep -qE '^  target\.k +int +8$' out || fail "plugins backward lacks target.k: $(cat out)"
expect 2 "plugins unknown" "did you mean 'ddim'" -- plugins ddmi
echo "ok: misspelt keys exit 2 at every level, for every command and for flash check"
