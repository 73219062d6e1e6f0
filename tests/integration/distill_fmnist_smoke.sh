#!/usr/bin/env bash
# The Fashion-MNIST recipes run end to end on images: a U-Net teacher
# trained for one step stands in for the real one, and each method
# (Imagine Flash with SRL and the conv discriminator, 1 step with the
# teacher-encoder discriminator, the forward ablation,
# step distillation, LCM and guidance-conditioned LCM, ADD, the paper-defined
# Table 3 recipe and its discriminator-alone row) distils for two iterations; `flash run`
# samples the Imagine Flash student on a small class-conditional noise bank
# and writes its samples, labels, image grid and the recipes' metrics (in
# the features of an evaluator trained for one step); `flash eval` scores
# those samples again from the files.
# Env (set by CTest): FLASH, FLASH_SOURCE_DIR.
: "${FLASH:?}" "${FLASH_SOURCE_DIR:?}"
source "${BASH_SOURCE%/*}/common.bash"
tiny_fmnist_teacher
two=(--set "teacher_checkpoint=$tmp/teacher/checkpoint.safetensors" --set train.steps=2 --set train.batch_size=2
  --set train.warmup_steps=0 "${small[@]}")
for r in imagine_flash_3step imagine_flash_1step no_backward step_distill_4step lcm lcm_guided add_4step paper/imagine_flash_3 paper/no_srl; do
  "$FLASH" distill "configs/distill/$r.yaml" "${two[@]}" --out "$tmp/$r" 2>"$tmp/err" || fail "$r: $(tail -3 "$tmp/err")"
  [[ -f $tmp/$r/checkpoint.safetensors ]] || fail "$r: no checkpoint"
  grep -q '"step": 2' "$tmp/$r/metrics.jsonl" || fail "$r: no metrics"
done
grep -q '"loss_srl"' "$tmp/imagine_flash_3step/metrics.jsonl" || fail "imagine_flash_3step did not use SRL"
grep -q '"disc_loss"' "$tmp/imagine_flash_3step/metrics.jsonl" || fail "imagine_flash_3step did not train its discriminator"
[[ -f $tmp/imagine_flash_3step/loss2.safetensors ]] || fail "the discriminator was not checkpointed"
[[ -f $tmp/lcm/clone0.safetensors ]] || fail "LCM's target network was not checkpointed"

"$FLASH" train configs/eval/fmnist_classifier.yaml --set train.steps=1 --set train.batch_size=2 \
  --set train.warmup_steps=0 --set train.eval_every=0 "${small[@]}" --out "$tmp/classifier" >/dev/null 2>"$tmp/err" ||
  fail "classifier: $(tail -3 "$tmp/err")"
two+=(--set "evaluator_checkpoint=$tmp/classifier/checkpoint.safetensors")
"$FLASH" run configs/distill/imagine_flash_3step.yaml "${two[@]}" --set run.samples=8 --set run.batch=4 \
  --out "$tmp/run" >"$tmp/table" 2>"$tmp/err" || fail "flash run: $(tail -3 "$tmp/err")"
for f in results.json samples/imagine_flash_3.npy samples/imagine_flash_3.labels.npy plots/imagine_flash_3.png; do
  [[ -f $tmp/run/$f ]] || fail "flash run wrote no $f"
done
grep -q '"labels": "samples/imagine_flash_3.labels.npy"' "$tmp/run/results.json" || fail "results.json lacks the labels"
for m in fd fd_lo fd_hi class_acc precision recall; do
  grep -q "\"$m\": [0-9]" "$tmp/run/results.json" || fail "results.json lacks metric $m"
done
"$FLASH" eval configs/eval/fmnist_metrics.yaml "${small[@]}" --set "evaluator_checkpoint=$tmp/classifier/checkpoint.safetensors" \
  --samples "$tmp/run/samples/imagine_flash_3.npy" --labels "$tmp/run/samples/imagine_flash_3.labels.npy" \
  --out "$tmp/eval.json" --grid "$tmp/eval.png" >"$tmp/summary" 2>"$tmp/err" || fail "flash eval: $(tail -3 "$tmp/err")"
[[ -f $tmp/eval.png ]] || fail "flash eval wrote no grid"
grep -q '"fd": [0-9]' "$tmp/eval.json" || fail "flash eval wrote no fd"
grep -q '"fd_hi": [0-9]' "$tmp/eval.json" || fail "flash eval wrote no fd interval"
grep -q "class_acc" "$tmp/summary" || fail "flash eval printed no summary"
echo PASS
