#!/usr/bin/env bash
# The judges of configs/eval/fmnist_judges.yaml on real images (the floor):
# the first evaluator's FD, KID and per-class diversity, and a second,
# independently trained evaluator's FD and KID under their own names
# (suffix _b). Real training images against the test split are as diverse
# as real data (diversity near 1) and KID is near 0 next to its spread.
# Env (set by CTest): FLASH, FLASH_SOURCE_DIR.
: "${FLASH:?}" "${FLASH_SOURCE_DIR:?}"
source "$(dirname "$0")/common.bash"
need_fashion_mnist
export OMP_WAIT_POLICY=passive
cd "$FLASH_SOURCE_DIR"
fm=(--set dataset.limit_train=2000 --set dataset.limit_test=600 --set threads=1)
for c in classifier classifier_b; do
  "$FLASH" train "configs/eval/fmnist_$c.yaml" --set train.steps=20 --set train.batch_size=32 --set train.warmup_steps=0 \
    --set train.eval_every=0 "${fm[@]}" --out "$tmp/$c" >/dev/null 2>"$tmp/err" || fail "$c: $(tail -3 "$tmp/err")"
done
"$FLASH" eval configs/eval/fmnist_judges.yaml "${fm[@]}" --set "evaluator_checkpoint=$tmp/classifier/checkpoint.safetensors" \
  --set "metrics[5].checkpoint=$tmp/classifier_b/checkpoint.safetensors" \
  --set "metrics[6].checkpoint=$tmp/classifier_b/checkpoint.safetensors" \
  --real 600 --out "$tmp/e.json" >"$tmp/out" 2>"$tmp/err" || fail "eval: $(tail -3 "$tmp/err")"
python3 - "$tmp/e.json" <<'PY' || fail "judges: $(cat "$tmp/e.json")"
import json, sys
m = json.load(open(sys.argv[1]))["metrics"]
for k in ("fd", "kid", "kid_sd", "diversity", "diversity_min", "fd_b", "kid_b"):
    assert k in m, k
assert 0.6 < m["diversity"] < 1.6, m["diversity"]
assert m["diversity_min"] <= m["diversity"]
assert abs(m["kid"]) < 0.01 and abs(m["kid_b"]) < 0.01, (m["kid"], m["kid_b"])
assert m["fd"] != m["fd_b"]  # two feature spaces
PY
echo "ok: two judges, KID and per-class diversity on real data"
