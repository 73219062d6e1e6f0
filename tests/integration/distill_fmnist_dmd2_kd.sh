#!/usr/bin/env bash
# The DMD2 and KD Fashion-MNIST recipes run end to end on images: a U-Net
# teacher trained for one step stands in for the real one, and each recipe
# distils for two iterations (KD with a bank of 8 from a 2-step teacher
# sampler); DMD2 1-step once more with its GAN head on the fake score's
# encoder, and interrupted after one iteration and resumed.
# Env (set by CTest): FLASH, FLASH_SOURCE_DIR.
: "${FLASH:?}" "${FLASH_SOURCE_DIR:?}"
source "${BASH_SOURCE%/*}/common.bash"
tiny_fmnist_teacher
two=(--set "teacher_checkpoint=$tmp/teacher/checkpoint.safetensors" --set train.steps=2 --set train.batch_size=2
  --set train.warmup_steps=0 --set strategy.fake_updates=2 "${small[@]}")
for r in dmd2_1step dmd2_2step dmd2_4step; do
  "$FLASH" distill "configs/distill/$r.yaml" "${two[@]}" --out "$tmp/$r" 2>"$tmp/err" || fail "$r: $(tail -3 "$tmp/err")"
  [[ -f $tmp/$r/checkpoint.safetensors ]] || fail "$r: no checkpoint"
  [[ -f $tmp/$r/fake_score.safetensors ]] || fail "$r: the fake score was not checkpointed"
  grep -q '"step": 2.*"dm_loss".*"fake_loss"' "$tmp/$r/metrics.jsonl" || fail "$r: no dm_loss / fake_loss"
done
"$FLASH" distill configs/distill/dmd2_1step.yaml "${two[@]}" --set strategy.gan_weight=0.1 --out "$tmp/gan" 2>"$tmp/err" ||
  fail "dmd2 GAN: $(tail -3 "$tmp/err")"
[[ -f $tmp/gan/fake_score_head.safetensors ]] || fail "dmd2 GAN: the head was not checkpointed"
grep -q '"gan_disc"' "$tmp/gan/metrics.jsonl" || fail "dmd2 GAN: no gan_disc"
"$FLASH" distill configs/distill/dmd2_1step.yaml "${two[@]}" --until 1 --out "$tmp/split" 2>"$tmp/err" ||
  fail "dmd2 --until 1: $(tail -3 "$tmp/err")"
"$FLASH" distill configs/distill/dmd2_1step.yaml "${two[@]}" --resume --out "$tmp/split" 2>"$tmp/err" ||
  fail "dmd2 --resume: $(tail -3 "$tmp/err")"
for f in checkpoint.safetensors fake_score.safetensors; do
  cmp -s "$tmp/dmd2_1step/$f" "$tmp/split/$f" || fail "dmd2: $f differs after --until 1 and --resume"
done
"$FLASH" distill configs/distill/kd_1step.yaml "${two[@]/strategy.fake_updates=2/strategy.bank_size=8}" \
  --set strategy.teacher_sampler.steps=2 --out "$tmp/kd" 2>"$tmp/err" || fail "kd: $(tail -3 "$tmp/err")"
ls "$tmp"/kd/kd_bank_*.npy >/dev/null 2>&1 || fail "kd: no cached bank"
grep -q '"step": 2' "$tmp/kd/metrics.jsonl" || fail "kd: no metrics"
echo PASS
