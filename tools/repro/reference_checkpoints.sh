#!/usr/bin/env bash
# The reference checkpoints in results/checkpoints/: the Fashion-MNIST
# teacher and the evaluator classifiers, each exported from its training
# run as fp32 weights alone (flash export: the EMA copy where the run keeps
# one), with its config, the command that trained it, the step and the
# SHA-256 in results/checkpoints/README.md and SHA256SUMS. The recipes load
# these, so no table retrains a teacher; `flash train CONFIG` reproduces
# each from its config for anyone who wants to check.
#
#   tools/repro/reference_checkpoints.sh            # from runs/<name>/
#   RUNS=/elsewhere tools/repro/reference_checkpoints.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
FLASH=${FLASH:-build/bin/flash}
RUNS=${RUNS:-runs}
out=results/checkpoints
mkdir -p "$out"
# name  run folder  config  weights
refs=(
  "fmnist_unet_s teacher configs/teacher/fmnist_unet_s.yaml ema"
  "fmnist_classifier classifier configs/eval/fmnist_classifier.yaml raw"
  "fmnist_classifier_b classifier_b configs/eval/fmnist_classifier_b.yaml raw"
  "fmnist_unet_s_zsnr teacher_zsnr configs/teacher/fmnist_unet_s_zsnr.yaml ema"
)
declare -A step_of
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for r in "${refs[@]}"; do
  set -- $r
  name=$1 run=$RUNS/$2 cfg=$3 weights=$4
  ckpt=$run/checkpoint.safetensors
  if [[ ! -f $ckpt ]]; then echo "skip $name: no $ckpt" >&2; continue; fi
  steps=$("$FLASH" check "$cfg" 2>/dev/null | awk '/^train:/{t=1} t && /^  steps:/{print $2; exit}')
  # flash export says the step it exported: only a finished run is a reference
  "$FLASH" export "$ckpt" --weights "$weights" --out "$tmp/$name.safetensors" 2>"$tmp/log"
  got=$(sed -n 's/.*, step \([0-9]*\)).*/\1/p' "$tmp/log")
  if [[ $got != "$steps" ]]; then echo "skip $name: $ckpt is at step $got of $steps" >&2; continue; fi
  mv "$tmp/$name.safetensors" "$out/$name.safetensors"
  cp "$cfg" "$out/$name.yaml"
  step_of[$name]=$got
done
if [[ -z $(ls "$out"/*.safetensors 2>/dev/null) ]]; then
  rmdir "$out" 2>/dev/null || true
  echo "no finished training run to export" >&2
  exit 1
fi
(cd "$out" && sha256sum ./*.safetensors | sed 's| \./| |' >SHA256SUMS)
{
  echo "# Reference checkpoints"
  echo
  echo "fp32 weights alone (\`flash export\`), loaded by the recipes as they are."
  echo "Each was trained with \`OMP_WAIT_POLICY=passive flash train CONFIG --out runs/NAME\`"
  echo "from the config beside it (a copy of the one named), and"
  echo "\`tools/repro/reference_checkpoints.sh\` exported it. \`sha256sum -c SHA256SUMS\` checks them."
  echo
  echo "| file | config | weights | step | SHA-256 |"
  echo "|---|---|---|---:|---|"
  for r in "${refs[@]}"; do
    set -- $r
    f=$out/$1.safetensors
    [[ -f $f ]] || continue
    # a reference exported earlier: its step, as flash export reads it
    if [[ -z ${step_of[$1]:-} ]]; then
      "$FLASH" export "$f" --weights raw --out "$tmp/again.safetensors" 2>"$tmp/log"
      step_of[$1]=$(sed -n 's/.*, step \([0-9]*\)).*/\1/p' "$tmp/log")
    fi
    echo "| $1.safetensors | $3 | $4 | ${step_of[$1]} | $(sha256sum "$f" | cut -c1-64) |"
  done
  # what was written by hand below the table (what the checkpoints give)
  # is kept as it was
  if [[ -f $out/README.md ]]; then
    awk 'tail { print; next } /^\| [^|]*\.safetensors \|/ { seen = 1; next } seen && !/^\|/ { tail = 1; print }' "$out/README.md"
  fi
} >"$tmp/README.md"
mv "$tmp/README.md" "$out/README.md"
cat "$out/README.md"
