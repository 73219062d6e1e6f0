#!/usr/bin/env bash
# `dtype: bf16` (--dtype bf16): mixed-precision convolutions.
#   - A value other than fp32 or bf16 is a config error naming the key (exit 2).
#   - Where this CPU cannot compute in bf16 (no AVX-512), asking for it is
#     a config error that says why (exit 2); the rest is skipped.
#   - Sampling the reference teacher in bf16 stays within the documented
#     tolerance of fp32 (RMS difference of the images below 0.03, on
#     [-1, 1] pixels, 10 DPM++ steps with CFG), and differs from it: bf16
#     is in effect.
#   - The evaluator computes in fp32 whatever the dtype: metrics of the
#     same samples are identical under dtype bf16 and fp32.
#   - bf16 training is deterministic (two runs, the same checkpoint bytes)
#     and its losses track fp32's.
# Env (set by CTest): FLASH, FLASH_SOURCE_DIR.
: "${FLASH:?}" "${FLASH_SOURCE_DIR:?}"
source "$(dirname "$0")/common.bash"
export OMP_WAIT_POLICY=passive
cd "$tmp" # expect writes its out and err here
expect 2 "bad dtype" "dtype" "fp32" -- check "$FLASH_SOURCE_DIR/configs/quickstart.yaml" --set dtype=fp16
# check judges the value, not the machine (as with device: cuda)
"$FLASH" check "$FLASH_SOURCE_DIR/configs/quickstart.yaml" --dtype bf16 >/dev/null 2>"$tmp/err" ||
  fail "check --dtype bf16: $(cat "$tmp/err")"
# a backend without bf16 kernels (the stand-in device: its table has no
# conv2d_precision, like the CUDA backend's) refuses it, naming the key
if [[ -n ${FLASH_FAKE_DEVICE:-} ]]; then
  FLASH_CUDA_LIB=$FLASH_FAKE_DEVICE expect 2 "bf16 on the stand-in device" "dtype: bf16 on device 'cuda'" "fp32 only" -- \
    sample "$FLASH_SOURCE_DIR/configs/quickstart.yaml" --device cuda --dtype bf16 --random-init --n 4 --out "$tmp/q.npy"
fi
cd "$FLASH_SOURCE_DIR"
rc=0
"$FLASH" sample configs/quickstart.yaml --dtype bf16 --random-init --n 4 --out "$tmp/q.npy" >/dev/null 2>"$tmp/err" || rc=$?
if ((rc != 0)); then
  ((rc == 2)) || fail "--dtype bf16 refused with exit $rc: $(cat "$tmp/err")"
  grep -q "dtype: bf16 on device 'cpu'" "$tmp/err" || fail "refusal without a reason: $(cat "$tmp/err")"
  echo "SKIP: no bf16 here: $(cat "$tmp/err")"
  exit 0
fi

need_fashion_mnist
teacher=(configs/teacher/fmnist_unet_s.yaml --ckpt results/checkpoints/fmnist_unet_s.safetensors
  --set sampler.steps=10 --set threads=2 --n 64 --seed 3)
for d in fp32 bf16; do
  "$FLASH" sample "${teacher[@]}" --dtype "$d" --out "$tmp/$d.npy" >/dev/null 2>"$tmp/err" ||
    fail "sample $d: $(tail -3 "$tmp/err")"
done
python3 - "$tmp/fp32.npy" "$tmp/bf16.npy" <<'PY' || fail "bf16 samples are not within tolerance of fp32"
import math, struct, sys
def load(p):
    b = open(p, "rb").read()
    n = struct.unpack("<H", b[8:10])[0]
    d = b[10 + n:]
    return struct.unpack("<%df" % (len(d) // 4), d)
a, b = load(sys.argv[1]), load(sys.argv[2])
rms = math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)) / len(a))
print("bf16 vs fp32 samples: RMS %.4f, max %.3f" % (rms, max(abs(x - y) for x, y in zip(a, b))))
assert 1e-4 < rms < 0.03, rms
PY

for d in fp32 bf16; do
  "$FLASH" eval configs/eval/fmnist_metrics.yaml --set dtype=$d --set dataset.limit_test=500 --set threads=2 \
    --set 'metrics=[{plugin: fd, evaluator: configs/eval/fmnist_classifier.yaml}]' \
    --samples "$tmp/fp32.npy" --out "$tmp/m_$d.json" >/dev/null 2>"$tmp/err" || fail "eval $d: $(tail -3 "$tmp/err")"
done
python3 - "$tmp/m_fp32.json" "$tmp/m_bf16.json" <<'PY' || fail "the evaluator does not stay fp32"
import json, sys
a, b = (json.load(open(p))["metrics"] for p in sys.argv[1:3])
assert a["fd"] == b["fd"], (a["fd"], b["fd"])
PY

train=(configs/teacher/fmnist_unet_s.yaml --set train.steps=6 --set train.batch_size=8 --set train.warmup_steps=0
  --set train.log_every=1 --set train.ckpt_every=6 --set dataset.limit_train=64 --set dataset.limit_test=8
  --set threads=1 --quiet)
for r in bf16_a bf16_b fp32; do
  d=${r%%_*}
  "$FLASH" train "${train[@]}" --dtype "$d" --out "$tmp/$r" >/dev/null 2>"$tmp/err" || fail "train $r: $(tail -3 "$tmp/err")"
done
cmp -s "$tmp/bf16_a/checkpoint.safetensors" "$tmp/bf16_b/checkpoint.safetensors" || fail "bf16 training is not deterministic"
grep -q "^dtype: bf16" "$tmp/bf16_a/config.yaml" || fail "the run's config does not record dtype: bf16"
python3 - "$tmp/fp32/metrics.jsonl" "$tmp/bf16_a/metrics.jsonl" <<'PY' || fail "bf16 losses do not track fp32's"
import json, sys
def losses(p):
    return [j["loss"] for j in map(json.loads, open(p)) if "loss" in j]
a, b = losses(sys.argv[1]), losses(sys.argv[2])
assert len(a) == len(b) == 6, (len(a), len(b))
assert a != b, "bf16 training equals fp32's: bf16 not in effect"
for x, y in zip(a, b):
    assert abs(x - y) <= 0.02 * abs(x) + 1e-3, (x, y)
print("losses fp32 %s\n       bf16 %s" % (["%.4f" % x for x in a], ["%.4f" % x for x in b]))
PY
echo "ok: bf16 within tolerance of fp32, evaluator fp32, deterministic training"
