#!/usr/bin/env bash
# The target's ceiling: how close the teacher's k-step target (Imagine Flash
# eq. 7: k time-uniform DDIM steps with guidance from x_t, the kit's
# operator) gets to the teacher's own converged solution, for k = 4, 8, 16,
# against DPM-Solver++(2M) on the same timesteps, and what each costs.
#
#   bash tools/repro/target_ceiling.sh [OUT]     (default results/target_ceiling)
#
# For each teacher, with build/bin/target_ceiling (tools/repro/target_ceiling.c):
#   - from x_t = alpha_t x0 + sigma_t eps at t = 999, 750, 500 (x0 from the
#     pipeline's dataset): the RMS error of x0 against a 100-step DDIM
#     reference from the same x_t, the teacher's NFEs and milliseconds per
#     target;
#   - from pure noise at t = 999: the solvers' samples scored by `flash
#     eval` (the 2-D mixture: sliced W2 to fresh draws and the exact NLL;
#     Fashion-MNIST: FD, class accuracy, precision/recall in the trained
#     classifier's features).
# Teachers: the exact 2-D mixture of configs/quickstart.yaml (unguided;
# also against a 1000-step reference, to see the 100-step one's own error)
# and the class-conditional mixture of configs/gmm2d/lcm_guided.yaml at
# w = 3 (seconds); the Fashion-MNIST teacher of configs/distill/base.yaml
# (w = 2) when its checkpoint exists (TEACHER, default
# results/checkpoints/fmnist_unet_s.safetensors; FMNIST_N examples, default 64:
# minutes), its pure-noise samples (FMNIST_SAMPLES, default 1000) when the
# classifier's does too (CLASSIFIER, default
# results/checkpoints/fmnist_classifier.safetensors). Sample files go to WORK
# (default runs/target_ceiling).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$root/results/target_ceiling}
TC=${TC:-$root/build/bin/target_ceiling}
FLASH=${FLASH:-$root/build/bin/flash}
work=${WORK:-$root/runs/target_ceiling}
fmnist_n=${FMNIST_N:-64}
fmnist_samples=${FMNIST_SAMPLES:-1000}
teacher=${TEACHER:-results/checkpoints/fmnist_unet_s.safetensors}
classifier=${CLASSIFIER:-results/checkpoints/fmnist_classifier.safetensors}
ks=(4 8 16)
mkdir -p "$out" "$work"
out=$(cd "$out" && pwd)
work=$(cd "$work" && pwd)
export OMP_WAIT_POLICY=passive
cd "$root"
table=$out/table.md
tmp=$table.tmp

# metric NAME < `flash eval` line: its value
metric() { sed -n "s/.*[ ,]$1 \([0-9.e+-]*\).*/\1/p"; }

# noise_table DIR EVAL_ARGS...: "solver|k|flash eval's line" for each of DIR's pure-noise samples
noise_table() {
  local dir=$1 s k f line
  shift
  for s in ref ddim dpmpp_2m; do
    for k in "${ks[@]}"; do
      [[ $s == ref ]] && { f=$dir/noise_ref.npy; k=100; } || f=$dir/noise_$s$k.npy
      line=$("$FLASH" eval "$@" --samples "$f" 2>&1) || { echo "flash eval $f: $line" >&2; return 1; }
      echo "${s/ref/ddim (reference)}|$k|$line"
      if [[ $s == ref ]]; then break; fi
    done
  done
}

{
  echo "# The target's ceiling: the teacher's k-step target against its converged solution"
  echo
  echo "Made by tools/repro/target_ceiling.sh. The target (Imagine Flash eq. 7, the kit's distill_target)"
  echo "is x0 after k time-uniform teacher DDIM steps with guidance from x_t (timesteps t, t(k-1)/k, ..., t/k);"
  echo "dpmpp_2m is DPM-Solver++(2M) on the same timesteps (the same NFEs). Errors are against a 100-step DDIM"
  echo "reference from the same x_t unless said otherwise. Milliseconds per target are batched CPU times on a"
  echo "2-core machine shared with other jobs: compare them within a table."
  echo
  echo "## 2-D mixture, exact teacher (configs/quickstart.yaml, unguided)"
  echo
  "$TC" configs/quickstart.yaml --format md --samples 10000 --out "$work/quickstart"
  echo
  echo "Against a 1000-step DDIM reference (the 100-step reference's own error is the ddim k = 100 row):"
  echo
  "$TC" configs/quickstart.yaml --format md --ref-k 1000 --k 4,8,16,100 | grep '^|'
  echo
  echo "From pure noise at t = 999, 10,000 samples: sliced W2 to 10,000 fresh draws of the mixture and the"
  echo "exact NLL (its floor in expectation, the mixture's entropy: gmm_entropy):"
  echo
  echo "| solver | k | sliced_wasserstein | gmm_nll | gmm_entropy |"
  echo "|---|---|---|---|---|"
  noise_table "$work/quickstart" configs/quickstart.yaml | while IFS='|' read -r name k line; do
    echo "| $name | $k | $(metric sliced_wasserstein <<<"$line") | $(metric gmm_nll <<<"$line") | $(metric gmm_entropy <<<"$line") |"
  done
  echo
  echo "## Class-conditional 2-D mixture, exact teacher, guidance w = 3 (configs/gmm2d/lcm_guided.yaml)"
  echo
  "$TC" configs/gmm2d/lcm_guided.yaml --guidance 3 --format md --k 4,8,16,100 --ref-k 1000
  echo
  echo "(against a 1000-step DDIM reference; the k = 100 rows are the 100-step solutions' own error)"
  echo
  echo "## Fashion-MNIST teacher (configs/distill/base.yaml: unet-s, guidance w = 2)"
  echo
  if [[ -f $teacher ]]; then
    step=$(python3 -c 'import json,struct,sys
f=open(sys.argv[1],"rb"); n=struct.unpack("<Q",f.read(8))[0]; m=json.loads(f.read(n)).get("__metadata__",{})
print(m.get("step","?"))' "$teacher" 2>/dev/null || echo "?")
    echo "Teacher: $teacher (step $step), EMA weights."
    echo
    samples=()
    [[ -f $classifier ]] && samples=(--samples "$fmnist_samples")
    "$TC" configs/distill/base.yaml --set "teacher_checkpoint=$teacher" --format md --n "$fmnist_n" \
      --out "$work/fmnist" "${samples[@]}"
    echo
    if ((${#samples[@]})); then
      echo "From pure noise at t = 999, $fmnist_samples samples (labels uniform), in the classifier's features"
      echo "against the 10,000 test images:"
      echo
      echo "| solver | k | fd | class_acc | precision | recall |"
      echo "|---|---|---|---|---|---|"
      ev=(configs/eval/fmnist_metrics.yaml --labels "$work/fmnist/noise_labels.npy" --set "evaluator_checkpoint=$classifier")
      for i in 0 1 2; do ev+=(--set "metrics[$i].n=$fmnist_samples"); done
      noise_table "$work/fmnist" "${ev[@]}" | while IFS='|' read -r name k line; do
        echo "| $name | $k | $(metric fd <<<"$line") | $(metric class_acc <<<"$line") | $(metric precision <<<"$line") | $(metric recall <<<"$line") |"
      done
    else
      echo "FD from pure noise not measured: no $classifier (CLASSIFIER; the"
      echo "reference is results/checkpoints/fmnist_classifier.safetensors)."
    fi
  else
    echo "Not measured: no $teacher (TEACHER; the reference is"
    echo "results/checkpoints/fmnist_unet_s.safetensors)."
  fi
} >"$tmp"
mv "$tmp" "$table"
cat "$table"
