#!/usr/bin/env bash
# The reference checkpoints of results/checkpoints/ are what the recipes
# load, unchanged and good: their SHA-256 match SHA256SUMS; every
# Fashion-MNIST recipe, run from any directory, resolves its teacher and
# evaluator to those files, and so does every run of the table sweeps
# (whose configs are written elsewhere); and the teacher's guided samples
# (w = 2, 10 DPM++ steps) are classified as the class they were asked for
# by the reference evaluator, and are close in the second one's features.
# Env (set by CTest): FLASH, FLASH_SOURCE_DIR.
: "${FLASH:?}" "${FLASH_SOURCE_DIR:?}"
source "$(dirname "$0")/common.bash"
export OMP_WAIT_POLICY=passive
src=$(cd "$FLASH_SOURCE_DIR" && pwd)
refs=$src/results/checkpoints

(cd "$refs" && sha256sum --quiet -c SHA256SUMS) || fail "SHA256SUMS does not match results/checkpoints/"
for f in "$refs"/*.safetensors; do
  grep -q " $(basename "$f")\$" "$refs/SHA256SUMS" || fail "$(basename "$f") is not in SHA256SUMS"
done

# from another directory, so a path that only works from the source root fails
cd "$tmp"
n=0
for f in "$src"/configs/distill/*.yaml "$src"/configs/distill/paper/*.yaml; do
  [[ $(basename "$f") == base.yaml ]] && continue
  "$FLASH" check "$f" >"$tmp/resolved" 2>"$tmp/err" || fail "$f: $(cat "$tmp/err")"
  for key in teacher_checkpoint evaluator_checkpoint; do
    p=$(sed -n "s/^$key: //p" "$tmp/resolved")
    [[ -n $p && -f $p ]] || fail "$f: $key '$p' is not a file"
    case $key in
      teacher_checkpoint) want=fmnist_unet_s.safetensors ;;
      evaluator_checkpoint) want=fmnist_classifier.safetensors ;;
    esac
    cmp -s "$p" "$refs/$want" || fail "$f: $key is $p, not results/checkpoints/$want"
  done
  n=$((n + 1))
done
((n >= 13)) || fail "only $n recipes"
# a sweep writes each run's config elsewhere: the reference paths still resolve
for s in table1 table3 table3_paper budget; do
  "$FLASH" sweep "$src/configs/sweeps/$s.yaml" --out "$tmp/$s" --dry-run >"$tmp/plan" 2>&1 ||
    fail "sweep $s: $(tail -3 "$tmp/plan")"
done

need_fashion_mnist
# 100 samples, ten of each class, from the reference teacher
labels_npy "$tmp/y.npy" 100
"$FLASH" sample "$src/configs/teacher/fmnist_unet_s.yaml" --set sampler.steps=10 \
  --ckpt "$refs/fmnist_unet_s.safetensors" --labels "$tmp/y.npy" --n 100 --seed 7 \
  --out "$tmp/x.npy" >/dev/null 2>"$tmp/err" || fail "sample: $(tail -3 "$tmp/err")"
"$FLASH" eval "$src/configs/eval/fmnist_judges.yaml" --set dataset.limit_test=1000 --set threads=2 \
  --samples "$tmp/x.npy" --labels "$tmp/y.npy" --out "$tmp/m.json" >/dev/null 2>"$tmp/err" ||
  fail "eval: $(tail -3 "$tmp/err")"
python3 - "$tmp/m.json" <<'PY' || fail "teacher samples: $(cat "$tmp/m.json")"
import json, sys
m = json.load(open(sys.argv[1]))["metrics"]
print("class_acc %.3f  fd %.2f  fd_b %.2f" % (m["class_acc"], m["fd"], m["fd_b"]))
assert m["class_acc"] >= 0.9, m["class_acc"]
assert m["fd"] < 8 and m["fd_b"] < 8, (m["fd"], m["fd_b"])
PY
echo "ok: $n recipes load the reference checkpoints; the teacher's samples are its classes"
