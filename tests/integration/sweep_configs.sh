#!/usr/bin/env bash
# flash sweep without long runs: --dry-run on every sweep in configs/sweeps/
# (each run's resolved config goes through `flash check`; the Fashion-MNIST
# tables need a trained teacher, so they are only planned here), --emit slurm (a job array whose commands run single runs;
# one is run and collected with flash report while the others are not),
# a failing run recorded with its error while the sweep goes on, and bad
# sweep files rejected with exit code 2.
# Env (set by CTest): FLASH, FLASH_SOURCE_DIR.
: "${FLASH:?}" "${FLASH_SOURCE_DIR:?}"
source "${BASH_SOURCE%/*}/common.bash"
sweeps=$FLASH_SOURCE_DIR/configs/sweeps

for t in smoke:9 table1:9 table3:5; do
  name=${t%%:*} n=${t##*:}
  "$FLASH" sweep "$sweeps/$name.yaml" --out "$tmp/$name" --dry-run >"$tmp/$name.plan" 2>"$tmp/err" ||
    fail "$name --dry-run: $(cat "$tmp/err")"
  grep -q "^$n runs" "$tmp/$name.plan" || fail "$name: expected $n runs: $(tail -1 "$tmp/$name.plan")"
  [[ -e $tmp/$name ]] && fail "$name --dry-run wrote $tmp/$name"
done
grep -q "^lcm_seed0 .* variants: lcm_3 lcm_2 lcm_1$" "$tmp/table1.plan" ||
  fail "table1: LCM is not one run sampled at 3, 2 and 1 steps"
grep -q "^imagine_flash_3_seed0 .* variants: imagine_flash_3 no_noise_correction$" "$tmp/table3.plan" ||
  fail "table3: the 3-step student is not also sampled without noise correction"

# --emit slurm: run folders, a job array over commands.txt
"$FLASH" sweep "$sweeps/smoke.yaml" --out "$tmp/s" --emit slurm 2>"$tmp/err" || fail "--emit slurm: $(cat "$tmp/err")"
grep -q -- "--array=0-8" "$tmp/s/slurm/sweep.sbatch" || fail "sbatch: $(cat "$tmp/s/slurm/sweep.sbatch")"
(($(wc -l <"$tmp/s/slurm/commands.txt") == 9)) || fail "commands.txt: $(cat "$tmp/s/slurm/commands.txt")"
for d in "$tmp"/s/runs/*/; do
  [[ -f $d/config.yaml && -f $d/run.json && ! -f $d/DONE ]] || fail "$d is not a prepared run folder"
done
bash -n "$tmp/s/slurm/sweep.sbatch" || fail "sweep.sbatch is not valid bash"
# what array task 0 does (the teacher run), then collection
line=$(sed -n 1p "$tmp/s/slurm/commands.txt")
[[ $line == *"--run teacher_dpmpp"* ]] || fail "task 0: $line"
(eval "$line") >/dev/null 2>"$tmp/err" || fail "task 0: $(tail -3 "$tmp/err")"
[[ -f $tmp/s/runs/teacher_dpmpp/DONE ]] || fail "task 0 did not complete its run"
[[ -f $tmp/s/results.csv ]] && fail "a single array task wrote the sweep's results"
"$FLASH" report "$tmp/s" >/dev/null 2>"$tmp/err" || fail "flash report: $(cat "$tmp/err")"
python3 - "$tmp/s" <<'PY' || fail "collection of a partly run sweep"
import csv, json, sys
d = sys.argv[1]
j = json.load(open(d + "/results.json"))
assert j["runs"] == {"ok": 1, "failed": 0, "unfinished": 8}, j["runs"]
rows = list(csv.DictReader(open(d + "/results.csv")))
ok = [r for r in rows if r["status"] == "ok"]
assert [r["variant"] for r in ok] == ["teacher_dpmpp_25", "teacher_dpmpp_1", "teacher_dpmpp_2", "teacher_dpmpp_3"], ok
assert sum(r["status"] == "unfinished" for r in rows) == 8
PY

# a failing run is recorded and the others go on
cat >"$tmp/bad.yaml" <<YAML
base: $FLASH_SOURCE_DIR/configs/quickstart.yaml
set: [run.samples=500, run.plots=false, train.steps=20, train.warmup_steps=5]
steps: [2]
variants:
  - {name: teacher, model: teacher, per_step: ["sampler={plugin: dpmpp_2m, steps: {steps}}"]}
  - {name: broken, set: ["strategy.plugin=no_such_strategy"], per_step: ["sampler.timesteps=[999, 500]"]}
YAML
"$FLASH" sweep "$tmp/bad.yaml" --out "$tmp/bad" --jobs 2 >/dev/null 2>"$tmp/err" && fail "a failed run did not fail the sweep"
[[ -f $tmp/bad/runs/teacher_s2/DONE ]] || fail "the good run did not complete: $(cat "$tmp/err")"
grep -q "no_such_strategy" "$tmp/bad/runs/broken_s2/FAILED" || fail "FAILED lacks the error: $(cat "$tmp/bad/runs/broken_s2/FAILED")"
grep -q "^broken_s2,broken,-,.*,failed,.*no_such_strategy" "$tmp/bad/results.csv" || fail "results.csv: $(cat "$tmp/bad/results.csv")"
grep -q "no_such_strategy" "$tmp/bad/report.html" || fail "report.html does not show the error"

# a teacher stage (teacher_train) shared by three runs is trained once: the
# first run trains it, the others wait and find it complete
cat >"$tmp/stage.yaml" <<YAML
base: $FLASH_SOURCE_DIR/configs/quickstart.yaml
set:
  - "teacher={plugin: mlp, dim: 2, hidden: 64, layers: 2, time_dim: 32}"
  - "teacher_checkpoint=$tmp/stage/teacher/checkpoint.safetensors"
  - "teacher_train={strategy: {plugin: denoise}, train: {steps: 300, batch_size: 128, lr: 2.0e-3, ema_decay: 0.99,
     log_every: 100, ckpt_every: 100}}"
  - "student={plugin: mlp, dim: 2, hidden: 64, layers: 2, time_dim: 32}"
  - "losses=[{plugin: reconstruction}]"
  - train.steps=100
  - train.warmup_steps=10
  - run.samples=500
  - run.plots=false
seeds: [0, 1, 2]
steps: [2]
timesteps: {2: [999, 500]}
variants:
  - {name: s, per_step: ["sampler.timesteps={timesteps}"]}
YAML
"$FLASH" sweep "$tmp/stage.yaml" --out "$tmp/stage" --jobs 2 >/dev/null 2>"$tmp/err" || fail "stage sweep: $(tail -3 "$tmp/err")"
(($(grep -l "at step 300 of 300" "$tmp"/stage/runs/*/run.log | wc -l) == 2)) || fail "the teacher was not trained exactly once"

# bad sweep files: exit code 2 with the key
printf 'base: x.yaml\nvariantz: []\n' >"$tmp/typo.yaml"
set +e
"$FLASH" sweep "$tmp/typo.yaml" --dry-run 2>"$tmp/err"
rc=$?
set -e
((rc == 2)) || fail "unknown key: exit $rc"
grep -q "variants" "$tmp/err" || fail "no did-you-mean: $(cat "$tmp/err")"
# a resolved config that does not check (a misspelt sampler key) stops --dry-run
printf 'base: %s\nset: ["sampler.stesp=3"]\nvariants: [{name: a}]\n' "$FLASH_SOURCE_DIR/configs/quickstart.yaml" >"$tmp/stesp.yaml"
set +e
"$FLASH" sweep "$tmp/stesp.yaml" --dry-run >/dev/null 2>"$tmp/err"
rc=$?
set -e
((rc == 2)) || fail "a config that does not check: exit $rc"
grep -q "stesp" "$tmp/err" || fail "no key in the message: $(cat "$tmp/err")"
set +e
"$FLASH" sweep "$sweeps/smoke.yaml" --jobs 0 2>/dev/null
rc=$?
set -e
((rc == 2)) || fail "--jobs 0: exit $rc"
echo PASS
