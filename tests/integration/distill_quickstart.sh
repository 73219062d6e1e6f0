#!/usr/bin/env bash
# A short quickstart: `flash run` on the exact gmm teacher with a 3-step
# teacher DPM++ baseline, a backward-distilled student, its no-noise-
# correction resampling, and a student trained with the out-of-tree
# my_loss plugin (tests/data/plugins/my_loss.c, built here) named in YAML
# alone. Checks results.json's structure, the sample files, that backward
# distillation beats the teacher's own 3 steps in sliced Wasserstein, that
# the plugin's loss was the one optimised and changed the result, that a
# finished run is not distilled again, and `flash distill --resume`.
# Env (set by CTest): FLASH, FLASH_SOURCE_DIR.
: "${FLASH:?}" "${FLASH_SOURCE_DIR:?}"
source "${BASH_SOURCE%/*}/common.bash"

mkdir -p "$tmp/plugins"
${CC:-cc} -shared -fPIC -Wall -Wextra -Werror "$FLASH_SOURCE_DIR/tests/data/plugins/my_loss.c" \
  -I"$FLASH_SOURCE_DIR/include" -o "$tmp/plugins/my_loss.so"

cfg=$FLASH_SOURCE_DIR/configs/quickstart.yaml
variants='[{name: teacher_dpmpp_3, model: teacher, set: ["sampler={plugin: dpmpp_2m, steps: 3, timestep_spacing: trailing}"]},
  {name: backward_3, set: ["losses=[{plugin: reconstruction, weight: 1.0}]"]},
  {name: no_nc_3, from: backward_3, set: ["sampler.noise_correction=false"]},
  {name: my_loss_3, set: ["losses=[{plugin: my_loss, weight: 1.0}]"]}]'
sets=(--set run.samples=4000 --set train.steps=1200 --set train.batch_size=256 --set train.warmup_steps=50
  --set "run.variants=$variants" --set run.plots=false)
export FLASH_PLUGIN_PATH=$tmp/plugins
"$FLASH" run "$cfg" --out "$tmp/run" "${sets[@]}" >"$tmp/table" 2>"$tmp/log" || fail "flash run: $(tail -5 "$tmp/log")"
cat "$tmp/table"

res=$tmp/run/results.json
[[ -f $res ]] || fail "no results.json"
for v in teacher_dpmpp_3 backward_3 no_nc_3 my_loss_3; do
  line=$(grep "\"name\": \"$v\"" "$res") || fail "no entry for $v"
  for key in '"steps": 3' '"nfe": 3,' '"seconds": ' '"distill_seconds": ' '"metrics": {"sliced_wasserstein": ' \
    '"gmm_nll": '; do
    [[ $line == *"$key"* ]] || fail "$v lacks $key: $line"
  done
  [[ -f $tmp/run/samples/$v.npy ]] || fail "no samples/$v.npy"
  # (N, 2) float32: 128-byte header + 4000 * 2 * 4 bytes
  (($(stat -c %s "$tmp/run/samples/$v.npy") == 128 + 32000)) || fail "samples/$v.npy has the wrong size"
done
sw() { grep "\"name\": \"$1\"" "$res" | sed 's/.*"sliced_wasserstein": \([0-9.e+-]*\).*/\1/'; }
t3=$(sw teacher_dpmpp_3) b3=$(sw backward_3) m3=$(sw my_loss_3)
echo "sliced Wasserstein: teacher 3-step $t3, backward 3-step $b3, my_loss 3-step $m3"
awk -v a="$b3" -v b="$t3" 'BEGIN { exit !(a < b) }' || fail "backward distillation ($b3) does not beat the 3-step teacher ($t3)"
[[ $m3 != "$b3" ]] || fail "my_loss changed nothing"
grep -q '"loss_my_loss"' "$tmp/run/my_loss_3/metrics.jsonl" || fail "my_loss was not optimised"
grep -q '"loss_reconstruction"' "$tmp/run/my_loss_3/metrics.jsonl" && fail "my_loss_3 also optimised reconstruction"

# a finished run is not distilled again
"$FLASH" run "$cfg" --out "$tmp/run" "${sets[@]}" >/dev/null 2>"$tmp/log2" || fail "second flash run: $(tail -3 "$tmp/log2")"
grep -q "nothing left to distill" "$tmp/log2" || fail "the second run distilled again"
grep '"name": "backward_3"' "$res" | grep -q '"distill_seconds": null' || fail "a reused student reports a distillation time"
[[ $(sw backward_3) == "$b3" ]] || fail "the second run changed backward_3"

# a run directory belongs to its config
rc=0
"$FLASH" run "$cfg" --out "$tmp/run" "${sets[@]}" --set train.lr=3e-3 >/dev/null 2>"$tmp/err" || rc=$?
((rc == 2)) || fail "a changed config reused the students: exit $rc"
grep -q "was distilled with a different config" "$tmp/err" || fail "$(cat "$tmp/err")"
# but the comparison's own settings may change
"$FLASH" run "$cfg" --out "$tmp/run" "${sets[@]/run.samples=4000/run.samples=3000}" >/dev/null 2>"$tmp/log3" ||
  fail "changing run.samples: $(tail -3 "$tmp/log3")"

# flash distill: an interrupted run resumes to the uninterrupted result, for
# the quickstart (backward distillation with its discriminator), LCM (its
# EMA target network) and progressive distillation (its frozen teacher,
# with the round boundary at the interruption)
one=(--set train.steps=60 --set train.batch_size=64 --set train.warmup_steps=5 --set train.ckpt_every=20
  --set train.log_every=10)
for strat in quickstart lcm progressive; do
  case $strat in
    quickstart) extra=() ;;
    lcm) extra=(--set "strategy={plugin: lcm, skip: 50}" --set "losses=[{plugin: reconstruction}]") ;;
    progressive) extra=(--set "strategy={plugin: progressive, teacher_steps: 16, final_steps: 4}"
      --set "losses=[{plugin: reconstruction}]") ;;
  esac
  "$FLASH" distill "$cfg" --out "$tmp/a_$strat" "${one[@]}" "${extra[@]}" 2>/dev/null || fail "flash distill ($strat)"
  "$FLASH" distill "$cfg" --out "$tmp/b_$strat" "${one[@]}" "${extra[@]}" --until 30 2>/dev/null ||
    fail "first half ($strat)"
  "$FLASH" distill "$cfg" --out "$tmp/b_$strat" "${one[@]}" "${extra[@]}" --resume 2>/dev/null || fail "resume ($strat)"
  cmp -s "$tmp/a_$strat/checkpoint.safetensors" "$tmp/b_$strat/checkpoint.safetensors" || {
    diff <(tail -2 "$tmp/a_$strat/metrics.jsonl") <(tail -2 "$tmp/b_$strat/metrics.jsonl") || true
    fail "$strat: the resumed student differs from the uninterrupted one"
  }
done
mv "$tmp/a_quickstart" "$tmp/a"
rc=0
"$FLASH" distill "$cfg" --out "$tmp/a" "${one[@]}" 2>"$tmp/err" || rc=$?
((rc == 2)) || fail "distilling into a finished run: exit $rc"
echo PASS
