#!/usr/bin/env bash
# The training-budget curve on the 2-D quickstart (60 iterations): a run
# keeps its student at train.snapshots; an interrupted and resumed run
# writes the same snapshot bytes; a `snapshot:` variant samples the
# student of that step (results.json: iterations, snapshot) and measures
# otherwise than the final one; a sweep's `snapshots:` adds those variants
# to every distilled student; `flash report` draws FD (here sliced
# Wasserstein) against iterations on a log axis with error bars over
# seeds. Bad snapshot lists and snapshot variants exit 2 naming the key.
# Env (set by CTest): FLASH, FLASH_SOURCE_DIR.
: "${FLASH:?}" "${FLASH_SOURCE_DIR:?}"
source "${BASH_SOURCE%/*}/common.bash"
cd "$tmp"
cfg=$FLASH_SOURCE_DIR/configs/quickstart.yaml
cp "$cfg" base.yaml
short=(--set threads=1 --set train.steps=60 --set train.warmup_steps=5 --set train.ckpt_every=20
  --set train.log_every=10 --set run.samples=1000 --set run.plots=false)

# ---- bad lists and variants: exit 2 naming the key, before any training
for bad in "[30, 15]|snapshots\[1\].*must increase" "[15, 90]|snapshots\[1\].*beyond train.steps \(60\)" \
  "[15, 2.5]|snapshots\[1\].*expected an integer" "[0, 15]|snapshots\[0\].*>= 1" "15|snapshots.*sequence"; do
  IFS='|' read -r list pat <<<"$bad"
  expect 2 "train.snapshots=$list" "train\.$pat" -- distill "$cfg" --out "$tmp/bad" "${short[@]}" --set "train.snapshots=$list"
  [[ ! -e $tmp/bad/checkpoint.safetensors ]] || fail "a bad snapshot list trained"
done
printf 'extends: base.yaml\ntrain:\n  steps: 60\n  snapshots: [10, 20, 20]\n' >dup.yaml
expect 2 "from a file" "dup\.yaml:4:[0-9]+.*train\.snapshots\[2\].*must increase" -- check dup.yaml --for distill
expect 2 "variant snapshot 0" "snapshot.*>= 1" -- run "$cfg" --out "$tmp/bad" "${short[@]}" \
  --set "run.variants=[{name: a, snapshot: 0}]"
expect 2 "a teacher's snapshot" "teacher variant has no .snapshot" -- run "$cfg" --out "$tmp/bad" "${short[@]}" \
  --set "run.variants=[{name: a, model: teacher, snapshot: 15}]"
expect 2 "a step not kept" "snapshot 20 is not one of its train.snapshots" -- run "$cfg" --out "$tmp/bad" "${short[@]}" \
  --set "train.snapshots=[15, 30]" --set "run.variants=[{name: a, snapshot: 20}]"
[[ ! -e $tmp/bad/a/checkpoint.safetensors ]] || fail "a variant of an unkept step was distilled"
expect 2 "a misspelt variant key" "did you mean 'snapshot'" -- run "$cfg" --out "$tmp/bad" "${short[@]}" \
  --set "run.variants=[{name: a, snapshots: 15}]"
printf 'base: base.yaml\nsnapshots: [30, 15]\nvariants: [{name: a}]\n' >bad_sweep.yaml
expect 2 "a sweep's list" "snapshots\[1\] is 15" -- sweep bad_sweep.yaml --dry-run

# ---- snapshots at the listed steps; resumed bit for bit
snaps=(--set "train.snapshots=[15, 30, 45]")
"$FLASH" distill "$cfg" --out "$tmp/a" "${short[@]}" "${snaps[@]}" 2>/dev/null || fail "flash distill"
[[ $(cd "$tmp/a" && echo snapshot_*) == "snapshot_15.safetensors snapshot_30.safetensors snapshot_45.safetensors" ]] ||
  fail "snapshots: $(ls "$tmp/a")"
"$FLASH" distill "$cfg" --out "$tmp/b" "${short[@]}" "${snaps[@]}" --until 35 2>/dev/null || fail "first part"
[[ ! -e $tmp/b/snapshot_45.safetensors ]] || fail "a snapshot past --until"
cp "$tmp/b/snapshot_30.safetensors" "$tmp/s30_before"
"$FLASH" distill "$cfg" --out "$tmp/b" "${short[@]}" "${snaps[@]}" --resume 2>/dev/null || fail "resume"
for s in 15 30 45; do
  cmp "$tmp/a/snapshot_$s.safetensors" "$tmp/b/snapshot_$s.safetensors" || fail "snapshot_$s differs after resume"
done
cmp "$tmp/s30_before" "$tmp/b/snapshot_30.safetensors" || fail "the resumed run rewrote an earlier snapshot"
cmp "$tmp/a/checkpoint.safetensors" "$tmp/b/checkpoint.safetensors" || fail "checkpoints differ after resume"
# weights and EMA, without the optimiser's moments: half a checkpoint
((2 * $(stat -c %s "$tmp/a/snapshot_15.safetensors") < $(stat -c %s "$tmp/a/checkpoint.safetensors") + 4096)) ||
  fail "a snapshot holds more than the weights and their EMA"

# ---- `snapshot:` variants of one flash run; a chain of from: through one
variants='[{name: if3}, {name: if3_it15, from: if3, snapshot: 15}, {name: if3_it30, from: if3, snapshot: 30},
  {name: no_nc_it15, from: if3_it15, set: ["sampler.noise_correction=false"]}]'
"$FLASH" run "$cfg" --out "$tmp/run" "${short[@]}" --set "train.snapshots=[15, 30]" --set "run.variants=$variants" \
  >/dev/null 2>"$tmp/log" || fail "flash run: $(tail -3 "$tmp/log")"
python3 - "$tmp/run/results.json" <<'PY' || fail "results.json of the snapshot variants"
import json, sys
v = {e["name"]: e for e in json.load(open(sys.argv[1]))["variants"]}
assert (v["if3"]["iterations"], v["if3"]["snapshot"]) == (60, False), v["if3"]
assert (v["if3_it15"]["iterations"], v["if3_it15"]["snapshot"], v["if3_it15"]["from"]) == (15, True, "if3")
assert (v["if3_it30"]["iterations"], v["no_nc_it15"]["iterations"], v["no_nc_it15"]["snapshot"]) == (30, 15, True)
sw = {k: e["metrics"]["sliced_wasserstein"] for k, e in v.items()}
assert len(set(sw.values())) == 4, sw
print("sliced Wasserstein at 15 / 30 / 60 iterations:", sw["if3_it15"], sw["if3_it30"], sw["if3"],
      "(15 without noise correction:", sw["no_nc_it15"], ")")
PY
[[ ! -e $tmp/run/if3_it15 ]] || fail "a snapshot variant distilled again"
"$FLASH" report "$tmp/run" >/dev/null 2>"$tmp/log" || fail "flash report: $(cat "$tmp/log")"
grep -q 'id="plot-budget" data-x-scale="log"' "$tmp/run/report.html" || fail "a run's report has no budget curve"
expect 2 "a snapshot the run did not keep" "no snapshot of step 20 in .*train.snapshots of variant 'if3'" -- \
  run "$cfg" --out "$tmp/run" "${short[@]}" --set "train.snapshots=[15, 30]" \
  --set "run.variants=[{name: if3}, {name: late, from: if3, snapshot: 20}]"

# ---- a sweep's snapshots: two seeds, two methods, a teacher
cat >sweep.yaml <<YAML
base: base.yaml
set: [threads=1, train.steps=60, train.warmup_steps=5, train.ckpt_every=20, train.log_every=10, run.samples=1000,
      run.plots=false]
seeds: [0, 1]
snapshots: [15, 30]
variants:
  - {name: teacher_dpmpp, model: teacher, share_steps: true, steps: [25, 3],
     per_step: ["sampler={plugin: dpmpp_2m, steps: {steps}, timestep_spacing: trailing}"]}
  - {name: imagine_flash, set: ["run.variants=[{name: imagine_flash_3}]"]}
  - name: lcm
    set: ["strategy={plugin: lcm, skip: 20, ema: 0.95}", "losses=[{plugin: reconstruction, weight: 1.0}]",
          "sampler={plugin: lcm, timesteps: [999, 750, 500]}", "run.variants=[{name: lcm_3}]"]
YAML
"$FLASH" sweep sweep.yaml --out "$tmp/s" --jobs 2 >"$tmp/s.table" 2>"$tmp/log" || fail "flash sweep: $(tail -5 "$tmp/log")"
cat "$tmp/s.table"
for r in imagine_flash_seed0 lcm_seed1; do
  [[ $(cd "$tmp/s/runs/$r/"*_3 && echo snapshot_*) == "snapshot_15.safetensors snapshot_30.safetensors" ]] ||
    fail "$r: $(ls "$tmp/s/runs/$r/"*_3)"
done
python3 - "$tmp/s" <<'PY' || fail "the sweep's report"
import csv, json, re, sys
d = sys.argv[1]
rows = list(csv.DictReader(open(d + "/results.csv")))
it = {(r["method"], r["seed"], int(r["iterations"] or 0)) for r in rows if r["model"] == "student"}
want = {(m, s, i) for m in ["imagine_flash", "lcm"] for s in "01" for i in [15, 30, 60]}
assert it == want, sorted(it ^ want)
t = {e["variant"]: e for e in json.load(open(d + "/results.json"))["table"]}
assert t["lcm_3_it15"]["seeds"] == 2 and t["lcm_3_it15"]["iterations"] == 15, t["lcm_3_it15"]
html = open(d + "/report.html").read()
svg = re.search(r'<svg[^>]*id="plot-budget".*?</svg>', html, re.S)
assert svg, "no budget curve"
svg = svg.group(0)
assert 'data-x-scale="log"' in svg, svg[:300]
assert re.findall(r'class="legend"[^>]*>([^<]*)<', svg) == ["imagine_flash", "lcm"], svg
assert {"20", "50"} <= set(re.findall(r'class="xtick"[^>]*>([^<]*)<', svg)), svg
assert svg.count('class="errorbar"') >= 4, "no error bars over the two seeds"
# the other plots keep the final students: one point per method and step count
pareto = re.search(r'<svg[^>]*id="plot-pareto".*?</svg>', html, re.S).group(0)
assert "_it15" not in pareto and "_it30" not in pareto, "a snapshot on the Pareto front"
for m in ["imagine_flash", "lcm"]:
    v = {i: t[f"{m}_3{'' if i == 60 else f'_it{i}'}"]["metrics"]["sliced_wasserstein"]["mean"] for i in [15, 30, 60]}
    print(f"{m}: sliced Wasserstein (mean of 2 seeds) at 15 / 30 / 60 iterations:", v[15], v[30], v[60])
PY
