#!/usr/bin/env bash
# One guidance-conditioned student for every guidance scale, against one
# student per scale, on the class-conditional mixture of
# configs/gmm2d/lcm_guided.yaml (exact `gmm` teacher, 3 classes): a Table 3
# style row across w.
#
#   bash tools/repro/guidance_gmm.sh [OUT] [SEEDS]     (default results/guidance_gmm, "0 1 2")
#
# For each training seed:
#   - LCM (4 steps) and DMD2 (1 step) students trained over
#     target.guidance_range [1, 6] with the scale as their input
#     (guidance_embed: true): one network each, sampled at w = 1, 2, 4
#     with one evaluation per step;
#   - the same methods trained at one scale each (target.guidance_scale =
#     w, no guidance input): three networks per method;
# and, once, the teacher's own DPM++(2M) at 4 steps with guidance (8
# evaluations: guidance's two per step).
# The judge: sliced Wasserstein-2 (256 directions) of 6,000 samples (labels
# i % 3) to 6,000 samples of the teacher's guided 25-step DPM++(2M) at the
# same w, drawn from other noise. The table gives mean ± standard deviation
# over the seeds. Takes about 10 minutes on 2 cores.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$root/results/guidance_gmm}
seeds=${2:-0 1 2}
FLASH=${FLASH:-$root/build/bin/flash}
cfg=$root/configs/gmm2d/lcm_guided.yaml
work=${WORK:-$root/runs/guidance_gmm}
mkdir -p "$out" "$work"
out=$(cd "$out" && pwd)
export OMP_WAIT_POLICY=passive
ws=(1 2 4)
n=6000
cd "$work"
python3 - "$n" <<'PY'
import struct, sys
# labels i % 3 as an int64 NPY, written without numpy
n = int(sys.argv[1])
hdr = "{'descr': '<i8', 'fortran_order': False, 'shape': (%d,), }" % n
hdr += " " * (63 - (10 + len(hdr)) % 64) + "\n"
with open("labels.npy", "wb") as f:
    f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode())
    f.write(b"".join(struct.pack("<q", i % 3) for i in range(n)))
PY
dmd2=(--set 'sampler={plugin: ddim, timesteps: [999]}' --set student.hidden=64 --set train.steps=2000
  --set train.batch_size=64 --set train.lr=3.0e-3 --set 'losses=[{plugin: reconstruction, weight: 0.5}]')
dmd2_strategy='plugin: dmd2, fake_updates: 2, fake_lr: 2.0e-3'
plain=(--set student.guidance_embed=false)
sample() { # OUT CKPT W ARGS...: the student's samples at scale W
  local o=$1 ck=$2 w=$3
  shift 3
  [[ -f $o ]] || "$FLASH" sample "$cfg" "$@" --ckpt "$ck" --set sampler.guidance_scale="$w" --labels labels.npy \
    --n $n --seed 7 --out "$o" 2>/dev/null
}
sw() { # SAMPLES W: the sliced W2 to the teacher's reference at W
  cat >"eval_w$2.yaml" <<YAML
seed: 0
threads: 1
metrics:
  - {plugin: sliced_wasserstein, projections: 256, reference: {plugin: npy, path: $work/teacher_w$2.npy, test_path: $work/teacher_w$2.npy}}
YAML
  "$FLASH" eval "eval_w$2.yaml" --samples "$1" 2>/dev/null | sed -n 's/.*sliced_wasserstein \([0-9.e+-]*\).*/\1/p'
}
teacher=(--set 'model={plugin: gmm, weights: [0.5, 0.3, 0.2], means: [[-2.0, 0.0], [2.0, 1.0], [0.0, -2.5]],
  stds: [1.2, 1.2, 1.2], classes: [0, 1, 2]}')
for w in "${ws[@]}"; do
  [[ -f teacher_w$w.npy ]] || "$FLASH" sample "$cfg" "${teacher[@]}" \
    --set "sampler={plugin: dpmpp_2m, steps: 25, timestep_spacing: trailing, guidance_scale: $w}" \
    --labels labels.npy --n $n --seed 1000 --out "teacher_w$w.npy" 2>/dev/null
  [[ -f teacher4_w$w.npy ]] || "$FLASH" sample "$cfg" "${teacher[@]}" \
    --set "sampler={plugin: dpmpp_2m, steps: 4, timestep_spacing: trailing, guidance_scale: $w}" \
    --labels labels.npy --n $n --seed 7 --out "teacher4_w$w.npy" 2>/dev/null
done
rows=rows.tsv
: >"$rows"
for w in "${ws[@]}"; do echo -e "teacher_dpmpp_4\t-\t$w\t$(sw "teacher4_w$w.npy" "$w")" >>"$rows"; done
for s in $seeds; do
  # one student over [1, 6], per method
  [[ -f lcm_g_$s/checkpoint.safetensors ]] || "$FLASH" distill "$cfg" --set seed="$s" --out "lcm_g_$s" >/dev/null 2>&1
  [[ -f dmd2_g_$s/checkpoint.safetensors ]] || "$FLASH" distill "$cfg" "${dmd2[@]}" --set seed="$s" \
    --set "strategy={$dmd2_strategy, target: {guidance_range: [1.0, 6.0]}}" --out "dmd2_g_$s" >/dev/null 2>&1
  for w in "${ws[@]}"; do
    sample "lcm_g_${s}_w$w.npy" "lcm_g_$s/checkpoint.safetensors" "$w"
    sample "dmd2_g_${s}_w$w.npy" "dmd2_g_$s/checkpoint.safetensors" "$w" "${dmd2[@]}"
    echo -e "lcm_4_guided\t$s\t$w\t$(sw "lcm_g_${s}_w$w.npy" "$w")" >>"$rows"
    echo -e "dmd2_1_guided\t$s\t$w\t$(sw "dmd2_g_${s}_w$w.npy" "$w")" >>"$rows"
    # one student per scale
    [[ -f lcm_w${w}_$s/checkpoint.safetensors ]] || "$FLASH" distill "$cfg" "${plain[@]}" --set seed="$s" \
      --set "strategy.target={guidance_scale: $w}" --out "lcm_w${w}_$s" >/dev/null 2>&1
    [[ -f dmd2_w${w}_$s/checkpoint.safetensors ]] || "$FLASH" distill "$cfg" "${plain[@]}" "${dmd2[@]}" \
      --set seed="$s" --set "strategy={$dmd2_strategy, target: {guidance_scale: $w}}" --out "dmd2_w${w}_$s" >/dev/null 2>&1
    sample "lcm_w${w}_${s}.npy" "lcm_w${w}_$s/checkpoint.safetensors" 1 "${plain[@]}"
    sample "dmd2_w${w}_${s}.npy" "dmd2_w${w}_$s/checkpoint.safetensors" 1 "${plain[@]}" "${dmd2[@]}"
    echo -e "lcm_4_per_scale\t$s\t$w\t$(sw "lcm_w${w}_${s}.npy" "$w")" >>"$rows"
    echo -e "dmd2_1_per_scale\t$s\t$w\t$(sw "dmd2_w${w}_${s}.npy" "$w")" >>"$rows"
  done
done
python3 - "$rows" "$out/table.md" "$seeds" <<'PY'
import math, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
methods = ["lcm_4_guided", "lcm_4_per_scale", "dmd2_1_guided", "dmd2_1_per_scale", "teacher_dpmpp_4"]
info = {"lcm_4_guided": ("1", "4"), "lcm_4_per_scale": ("3", "4"), "dmd2_1_guided": ("1", "1"),
        "dmd2_1_per_scale": ("3", "1"), "teacher_dpmpp_4": ("1 (teacher)", "8")}
ws = sorted({int(r[2]) for r in rows})
def cell(m, w):
    v = [float(r[3]) for r in rows if r[0] == m and int(r[2]) == w and r[3]]
    if not v: return "-"
    mu = sum(v) / len(v)
    if len(v) == 1: return f"{mu:.3f}"
    sd = math.sqrt(sum((x - mu) ** 2 for x in v) / (len(v) - 1))
    return f"{mu:.3f} ± {sd:.3f}"
with open(sys.argv[2], "w") as f:
    f.write("# One guidance-conditioned student against one student per scale (2-D mixture)\n\n")
    f.write("Sliced W2 to the teacher's guided 25-step DPM++(2M) samples at the same w (lower is better); "
            f"mean ± std over training seeds {sys.argv[3]}; 6,000 samples each. Made by tools/repro/guidance_gmm.sh.\n\n")
    f.write("| method | networks | NFE | " + " | ".join(f"w = {w}" for w in ws) + " |\n")
    f.write("|---|---|---|" + "---|" * len(ws) + "\n")
    for m in methods:
        f.write(f"| {m} | {info[m][0]} | {info[m][1]} | " + " | ".join(cell(m, w) for w in ws) + " |\n")
print(open(sys.argv[2]).read())
PY
cp "$rows" "$out/rows.tsv"
