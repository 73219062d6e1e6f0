#!/usr/bin/env bash
# The Fashion-MNIST recipes on `--device cuda`, run here on the stand-in
# device (tests/fake_device/: the CPU kernels under the name "cuda"): the
# components with device state of their own (the 1-step recipe's
# teacher-encoder discriminator with its own teacher copy, LCM's EMA target
# network, the evaluator behind fd/class_acc/precision_recall) give the
# cpu run's values. U-Nets and teacher stand-ins trained for one step on 16
# images keep it short. Tolerance as in device_pipeline.sh:
# |a - b| <= 1e-4 + 1e-3 |a| (observed: identical).
# Env (set by CTest): FLASH, FLASH_SOURCE_DIR, FLASH_FAKE_DEVICE.
: "${FLASH:?}" "${FLASH_SOURCE_DIR:?}" "${FLASH_FAKE_DEVICE:?}"
source "${BASH_SOURCE%/*}/common.bash"
cd "$FLASH_SOURCE_DIR"
need_fashion_mnist
export OMP_WAIT_POLICY=passive
fake() { FLASH_CUDA_LIB=$FLASH_FAKE_DEVICE "$@"; }
numbers() {
  sed -E 's/"(step_s|seconds|distill_seconds)": [0-9.e+-]+//g' "$1" | grep -oE '[-]?[0-9][0-9.]*(e[-+]?[0-9]+)?'
}
same_numbers() {
  paste <(numbers "$1") <(numbers "$2") | awk -v what="$3" '
    NF != 2 { print what ": unequal lengths"; exit 1 }
    { a = $1 + 0; b = $2 + 0; d = a - b; if (d < 0) d = -d; m = a < 0 ? -a : a
      if (d > 1e-4 + 1e-3 * m) { print what ": line " NR ": " $1 " vs " $2; exit 1 } n++ }
    END { if (!n) { print what ": nothing to compare"; exit 1 } }'
}

tiny_fmnist_teacher
"$FLASH" train configs/eval/fmnist_classifier.yaml --set train.steps=1 --set train.batch_size=2 \
  --set train.warmup_steps=0 --set train.eval_every=0 "${small[@]}" --out "$tmp/classifier" >/dev/null 2>"$tmp/err" ||
  fail "classifier: $(tail -3 "$tmp/err")"
two=(--set "teacher_checkpoint=$tmp/teacher/checkpoint.safetensors" --set train.steps=2 --set train.batch_size=2
  --set train.warmup_steps=0 "${small[@]}")
for r in imagine_flash_1step lcm; do
  for d in cpu cuda; do
    fake "$FLASH" distill "configs/distill/$r.yaml" "${two[@]}" --device $d --out "$tmp/$r.$d" 2>"$tmp/err" ||
      fail "$r on $d: $(tail -3 "$tmp/err")"
  done
  grep -q "device cuda" "$tmp/err" || fail "$r did not run on the device"
  same_numbers "$tmp/$r.cpu/metrics.jsonl" "$tmp/$r.cuda/metrics.jsonl" "$r metrics" || fail "$r differs on the device"
done
grep -q '"disc_loss"' "$tmp/imagine_flash_1step.cuda/metrics.jsonl" || fail "the discriminator did not train"
[[ -f $tmp/lcm.cuda/clone0.safetensors ]] || fail "LCM's target network was not checkpointed from the device"

two+=(--set "evaluator_checkpoint=$tmp/classifier/checkpoint.safetensors")
for d in cpu cuda; do
  fake "$FLASH" run configs/distill/imagine_flash_3step.yaml "${two[@]}" --set run.samples=8 --set run.batch=4 \
    --device $d --out "$tmp/run.$d" >/dev/null 2>"$tmp/err" || fail "flash run on $d: $(tail -3 "$tmp/err")"
done
for m in fd class_acc precision recall; do
  grep -q "\"$m\": [0-9]" "$tmp/run.cuda/results.json" || fail "results.json lacks metric $m"
done
same_numbers "$tmp/run.cpu/results.json" "$tmp/run.cuda/results.json" "run results" || fail "flash run differs on the device"
echo PASS
