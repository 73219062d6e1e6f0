#!/usr/bin/env bash
# `flash run` trains its teacher first when the config says how
# (`teacher_train:`) and `teacher_checkpoint` does not exist yet: a 2-D mlp
# teacher trained on the quickstart's mixture, then a student distilled
# from it (initialised from its weights); a second run loads the finished
# teacher instead of training it again.
# Env (set by CTest): FLASH, FLASH_SOURCE_DIR.
: "${FLASH:?}" "${FLASH_SOURCE_DIR:?}"
source "${BASH_SOURCE%/*}/common.bash"

sets=(--set "teacher={plugin: mlp, dim: 2, hidden: 64, layers: 2, time_dim: 32}"
  --set "teacher_checkpoint=$tmp/out/teacher/checkpoint.safetensors"
  --set "teacher_train={strategy: {plugin: denoise}, train: {steps: 300, batch_size: 128, lr: 2.0e-3, ema_decay: 0.99,
    log_every: 100, ckpt_every: 100}}"
  --set "student={plugin: mlp, dim: 2, hidden: 64, layers: 2, time_dim: 32}"
  --set "losses=[{plugin: reconstruction}]" --set train.steps=200 --set train.warmup_steps=10
  --set run.samples=1000 --set run.plots=false
  --set 'run.variants=[{name: teacher_3, model: teacher, set: ["sampler={plugin: dpmpp_2m, steps: 3}"]}, {name: student_3}]')
"$FLASH" run "$FLASH_SOURCE_DIR/configs/quickstart.yaml" --out "$tmp/out" "${sets[@]}" >/dev/null 2>"$tmp/log" ||
  fail "flash run: $(tail -3 "$tmp/log")"
grep -q "training the teacher" "$tmp/log" || fail "the teacher was not trained"
grep -q "student initialised from the teacher's weights" "$tmp/log" || fail "the student did not start from the teacher"
[[ -f $tmp/out/teacher/checkpoint.safetensors ]] || fail "no teacher checkpoint"
grep -q '"step": 300' "$tmp/out/teacher/metrics.jsonl" || fail "the teacher's training log is incomplete"
for v in teacher_3 student_3; do grep -q "\"name\": \"$v\"" "$tmp/out/results.json" || fail "no $v"; done

"$FLASH" run "$FLASH_SOURCE_DIR/configs/quickstart.yaml" --out "$tmp/out" "${sets[@]}" >/dev/null 2>"$tmp/log2" ||
  fail "second flash run: $(tail -3 "$tmp/log2")"
grep -q "nothing left to train" "$tmp/log2" || fail "the second run trained the teacher again"
grep -q "nothing left to distill" "$tmp/log2" || fail "the second run distilled again"
echo PASS
