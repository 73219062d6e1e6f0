#!/usr/bin/env bash
# flash sweep without long runs: --dry-run on every sweep in configs/sweeps/
# (each run's resolved config goes through `flash check`; the Fashion-MNIST
# tables need a trained teacher, so they are only planned here), --emit slurm (a job array whose commands run single runs;
# one is run and collected with flash report while the others are not;
# --ranks and --gpus-per-rank in the job, the refusals of a batch that does
# not split and of bad values, and a line run as two tasks under mpirun),
# a failing run recorded with its error while the sweep goes on, and bad
# sweep files rejected with exit code 2.
# Env (set by CTest): FLASH, FLASH_SOURCE_DIR, FLASH_BINARY_DIR.
: "${FLASH:?}" "${FLASH_SOURCE_DIR:?}" "${FLASH_BINARY_DIR:?}"
source "${BASH_SOURCE%/*}/common.bash"
sweeps=$FLASH_SOURCE_DIR/configs/sweeps

for t in smoke:9 table1:23 table3:5; do
  name=${t%%:*} n=${t##*:}
  "$FLASH" sweep "$sweeps/$name.yaml" --out "$tmp/$name" --dry-run >"$tmp/$name.plan" 2>"$tmp/err" ||
    fail "$name --dry-run: $(cat "$tmp/err")"
  grep -q "^$n runs" "$tmp/$name.plan" || fail "$name: expected $n runs: $(tail -1 "$tmp/$name.plan")"
  [[ -e $tmp/$name ]] && fail "$name --dry-run wrote $tmp/$name"
done
# a variant's own seeds: the rows that decide the 3-step ordering at 3 seeds,
# the others at the sweep's one
for v in imagine_flash_3 imagine_flash_3_uniform step_distill lcm; do
  for s in 0 1 2; do grep -q "^${v}_seed$s .* seed $s " "$tmp/table1.plan" || fail "table1: no ${v}_seed$s"; done
done
grep -q "^dmd2_1_seed1 " "$tmp/table1.plan" && fail "table1: dmd2_1 took the deciding rows' seeds"
printf 'base: x.yaml\nvariants: [{name: t, model: teacher, seeds: [0, 1]}]\n' >"$tmp/tseeds.yaml"
set +e
"$FLASH" sweep "$tmp/tseeds.yaml" --dry-run 2>"$tmp/err"
rc=$?
set -e
((rc == 2)) && grep -q "tseeds.yaml:2.*not seeded" "$tmp/err" || fail "seeds on a teacher variant: exit $rc: $(cat "$tmp/err")"
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

# each array task starts its line with srun; one task and no GPU by default
sb=$tmp/s/slurm/sweep.sbatch
grep -q -- "^#SBATCH --ntasks=1$" "$sb" || fail "sbatch without --ranks: $(cat "$sb")"
grep -q -- '^srun --ntasks=1 --cpus-per-task=[0-9]* bash -c "$line"$' "$sb" || fail "no srun: $(cat "$sb")"
grep -q -- "--gpus-per-task" "$sb" && fail "GPUs asked for without --gpus-per-rank: $(cat "$sb")"

# --ranks N: N tasks per array task, one srun step
cd "$tmp"
"$FLASH" sweep "$sweeps/smoke.yaml" --out "$tmp/r2" --emit slurm --ranks 2 2>"$tmp/err" ||
  fail "--ranks 2: $(cat "$tmp/err")"
sb=$tmp/r2/slurm/sweep.sbatch
grep -q -- "^#SBATCH --ntasks=2$" "$sb" || fail "--ranks 2: $(cat "$sb")"
grep -q -- '^srun --ntasks=2 --cpus-per-task=[0-9]* bash -c "$line"$' "$sb" || fail "--ranks 2, srun: $(cat "$sb")"
grep -q -- "--gpus-per-task" "$sb" && fail "--ranks 2 asked for GPUs: $(cat "$sb")"
bash -n "$sb" || fail "--ranks 2: sweep.sbatch is not valid bash"
# --gpus-per-rank G: GPUs for runs on cuda (nothing is run, so no GPU is needed)
printf 'base: %s\nset: ["device=cuda"]\nvariants: [{name: t, model: teacher}]\n' \
  "$FLASH_SOURCE_DIR/configs/quickstart.yaml" >"$tmp/cuda.yaml"
"$FLASH" sweep "$tmp/cuda.yaml" --out "$tmp/g" --emit slurm --ranks 2 --gpus-per-rank 1 2>"$tmp/err" ||
  fail "--gpus-per-rank 1: $(cat "$tmp/err")"
sb=$tmp/g/slurm/sweep.sbatch
grep -q -- "^#SBATCH --gpus-per-task=1$" "$sb" || fail "--gpus-per-rank 1: $(cat "$sb")"
grep -q -- '^srun --ntasks=2 --cpus-per-task=[0-9]* --gpus-per-task=1 bash -c "$line"$' "$sb" ||
  fail "--gpus-per-rank 1, srun: $(cat "$sb")"
bash -n "$sb" || fail "--gpus-per-rank 1: sweep.sbatch is not valid bash"
# refused with exit 2 before anything is written: a batch that does not
# split (the smoke runs train batches of 256), bad values, no --emit, GPUs
# for runs on cpu
expect 2 "--ranks 3" "run 'imagine_flash_s1_seed0': train.batch_size 256 .*does not split evenly over --ranks 3" \
  -- sweep "$sweeps/smoke.yaml" --out "$tmp/r3" --emit slurm --ranks 3
[[ -e $tmp/r3 ]] && fail "a refused --emit wrote $tmp/r3"
expect 2 "--ranks 0" "--ranks: expected an integer in \[1, " \
  -- sweep "$sweeps/smoke.yaml" --out "$tmp/r0" --emit slurm --ranks 0
expect 2 "--ranks x" "--ranks: expected an integer" -- sweep "$sweeps/smoke.yaml" --out "$tmp/r0" --emit slurm --ranks x
expect 2 "--gpus-per-rank -1" "--gpus-per-rank: expected an integer in \[0, " \
  -- sweep "$sweeps/smoke.yaml" --out "$tmp/r0" --emit slurm --gpus-per-rank -1
expect 2 "--ranks without --emit" "--ranks needs --emit slurm" -- sweep "$sweeps/smoke.yaml" --out "$tmp/r0" --ranks 2
expect 2 "--gpus-per-rank without --emit" "--gpus-per-rank needs --emit slurm" \
  -- sweep "$sweeps/smoke.yaml" --out "$tmp/r0" --gpus-per-rank 1
expect 2 "GPUs for a cpu run" "run 'teacher_dpmpp': --gpus-per-rank 1 gives it GPUs, but its device is cpu" \
  -- sweep "$sweeps/smoke.yaml" --out "$tmp/r0" --emit slurm --gpus-per-rank 1
[[ -e $tmp/r0 ]] && fail "a refused --emit wrote $tmp/r0"

# What srun does with a line, done by mpirun where MPI is built: both
# tasks' sweeps start, each one's `flash run` is one rank of one world, and
# task 0 alone keeps the books. A whole sweep under a launcher is refused.
if command -v mpirun >/dev/null && [[ -f $FLASH_BINARY_DIR/lib/libflash_comm_mpi.so ]]; then
  cat >"$tmp/dp.yaml" <<YAML
base: $FLASH_SOURCE_DIR/configs/quickstart.yaml
set: [run.samples=500, run.plots=false, train.steps=40, train.warmup_steps=5, train.batch_size=128]
steps: [2]
variants:
  - {name: if, per_step: ["sampler.timesteps=[999, 500]"]}
YAML
  "$FLASH" sweep "$tmp/dp.yaml" --out "$tmp/dp" --emit slurm --ranks 2 2>"$tmp/err" ||
    fail "dp --emit: $(cat "$tmp/err")"
  line=$(sed -n 1p "$tmp/dp/slurm/commands.txt")
  OMP_WAIT_POLICY=passive timeout 300 mpirun --allow-run-as-root --oversubscribe -np 2 bash -c "$line" \
    >/dev/null 2>"$tmp/err" || fail "two tasks of one run: $(tail -5 "$tmp/err")"
  [[ -f $tmp/dp/runs/if_s2/DONE && -f $tmp/dp/noise_bank.npy ]] || fail "two tasks: the run is not complete"
  grep -q "data parallel over 2 ranks (mpi)" "$tmp/dp/runs/if_s2/run.log" ||
    fail "not one world of two ranks: $(cat "$tmp/dp/runs/if_s2/run.log")"
  (($(grep -c "if_s2 started" "$tmp/err") == 1)) || fail "more than task 0 reported: $(cat "$tmp/err")"
  rc=0
  timeout 120 mpirun --allow-run-as-root --oversubscribe -np 2 "$FLASH" sweep "$tmp/dp.yaml" --out "$tmp/dpw" \
    >/dev/null 2>"$tmp/err" || rc=$?
  ((rc != 0)) && grep -q "each task runs one rank of one prepared run" "$tmp/err" ||
    fail "a whole sweep under mpirun: exit $rc: $(cat "$tmp/err")"
  [[ -e $tmp/dpw ]] && fail "a refused sweep under mpirun wrote $tmp/dpw"
else
  echo "no MPI: the two-task run is not checked (tools/setup.sh installs Open MPI)"
fi

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
