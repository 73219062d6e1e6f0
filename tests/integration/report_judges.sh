#!/usr/bin/env bash
# A second judge in the report: rows that fd (the first evaluator's
# features) and fd_b (a second evaluator's, `suffix: _b`) rank oppositely
# are listed under the table, in table.md and report.html; pairs the two
# agree on are not, and a metric's own further values (kid and kid_sd,
# diversity and diversity_min, kid_sd_b with an evaluator's suffix) are not
# taken for a second judge, nor ranked. And the
# judges scored after a sweep (tools/repro/judges.sh) join its rows.
# Env (set by CTest): FLASH, FLASH_SOURCE_DIR.
: "${FLASH:?}" "${FLASH_SOURCE_DIR:?}"
source "${BASH_SOURCE%/*}/common.bash"

mkdir "$tmp/in"
python3 - "$tmp/in/results.json" <<'PY'
import json, sys
def row(run, variant, model, seed, m):
    return {"run": run, "method": variant, "variant": variant, "model": model, "seed": seed, "guidance": None,
            "status": "ok", "steps": 3, "nfe": 3, "sample_seconds": 1.0, "ms_per_sample": 0.5,
            "distill_seconds": None, "metrics": m}
rows = [
    row("t", "teacher_25", "teacher", None, {"fd": 1.0, "fd_b": 10.0, "kid": 0.1, "kid_sd": 0.5, "kid_sd_b": 0.5}),
    # fd ranks alpha before beta, fd_b beta before alpha: one feature space only
    row("a", "alpha_3", "student", 0, {"fd": 2.0, "fd_b": 30.0, "kid": 0.2, "kid_sd": 0.1, "kid_sd_b": 0.9}),
    row("b", "beta_3", "student", 0, {"fd": 3.0, "fd_b": 20.0, "kid": 0.3, "kid_sd": 0.9, "kid_sd_b": 0.1}),
    # gamma is behind both in both spaces
    row("c", "gamma_3", "student", 0, {"fd": 4.0, "fd_b": 40.0, "kid": 0.4, "kid_sd": 0.2, "kid_sd_b": 0.2}),
]
json.dump({"metrics": ["fd", "fd_b", "kid", "kid_sd", "kid_sd_b"], "baseline": "teacher_25",
           "runs": {"ok": 4, "failed": 0, "unfinished": 0}, "rows": rows, "table": []}, open(sys.argv[1], "w"))
PY
"$FLASH" report "$tmp/in" --out "$tmp/r" >/dev/null 2>"$tmp/log" || fail "flash report: $(cat "$tmp/log")"
for f in table.md report.html; do
  grep -q 'Orderings that hold in one feature space only' "$tmp/r/$f" || fail "$f: no judges caption"
  want='alpha_3 vs beta_3 (fd 2 < 3, fd_b 30 > 20)'
  [[ $f == report.html ]] && want='alpha_3 vs beta_3 (fd 2 &lt; 3, fd_b 30 &gt; 20)'
  grep -qF "$want" "$tmp/r/$f" || fail "$f: $(grep -A2 Orderings "$tmp/r/$f")"
  line=$(grep 'Orderings that hold' "$tmp/r/$f")
  [[ $line != *gamma_3* && $line != *kid* ]] || fail "$f: pairs the judges agree on, or kid_sd as a judge: $line"
done
grep -q "not ranked: a metric's spread and diversity (best at 1): kid_sd, kid_sd_b" "$tmp/r/table.md" ||
  fail "kid_sd, kid_sd_b ranked: $(grep 'lower is better' "$tmp/r/table.md")"

# The judges after the fact (tools/repro/judges.sh): a finished sweep run
# whose variant has 64 samples of the reference teacher gets
# judges/<variant>.json, and `flash report` adds those metrics to the row
# while the run's own fd stays; a second pass scores nothing again.
need_fashion_mnist
src=$(cd "$FLASH_SOURCE_DIR" && pwd)
run=$tmp/sweep/runs/t_seed0
mkdir -p "$run/samples"
echo '{"id": "t_seed0", "index": 0, "method": "t", "model": "teacher", "seed": null, "guidance": null,
 "entries": [{"name": "t_5", "method": "t", "noise_correction": null}]}' >"$run/run.json"
echo '{"complete": true, "samples": 64, "variants": [{"name": "t_5", "model": "teacher", "steps": 5, "nfe": 10,
 "seconds": 1.0, "samples": "samples/t_5.npy", "metrics": {"fd": 123.0}}]}' >"$run/results.json"
: >"$run/DONE"
labels_npy "$run/samples/t_5.labels.npy" 64
"$FLASH" sample "$src/configs/teacher/fmnist_unet_s.yaml" --ckpt "$src/results/checkpoints/fmnist_unet_s.safetensors" \
  --set sampler.steps=5 --set threads=2 --labels "$run/samples/t_5.labels.npy" --out "$run/samples/t_5.npy" \
  >/dev/null 2>"$tmp/log" || fail "sample: $(tail -3 "$tmp/log")"
small_judges=(-- --set dataset.limit_test=500 --set threads=2)
for i in 0 1 2 3 4 5 6; do small_judges+=(--set "metrics[$i].n=64"); done
FLASH=$FLASH bash "$src/tools/repro/judges.sh" "$tmp/sweep" "${small_judges[@]}" 2>"$tmp/log" ||
  fail "judges.sh: $(cat "$tmp/log")"
grep -q "1 variants scored" "$tmp/log" || fail "judges.sh: $(cat "$tmp/log")"
[[ -f $run/judges/t_5.json ]] || fail "no judges/t_5.json"
FLASH=$FLASH bash "$src/tools/repro/judges.sh" "$tmp/sweep" "${small_judges[@]}" 2>"$tmp/log"
grep -q "0 variants scored, 1 scored before" "$tmp/log" || fail "second pass: $(cat "$tmp/log")"
"$FLASH" report "$tmp/sweep" --out "$tmp/sr" >/dev/null 2>"$tmp/log" || fail "flash report: $(cat "$tmp/log")"
python3 - "$tmp/sr/results.json" <<'PY' || fail "judges in the report: $(cat "$tmp/sr/results.json")"
import json, sys
j = json.load(open(sys.argv[1]))
row = [r for r in j["rows"] if r["variant"] == "t_5"][0]
m = row["metrics"]
assert m["fd"] == 123.0, m["fd"]                  # the run's own value stays
for k in ("fd_b", "kid", "kid_b", "diversity", "class_acc"):
    assert isinstance(m.get(k), float), (k, m.get(k))
assert m["class_acc"] >= 0.8, m["class_acc"]       # the labels went with the samples
PY
echo "report_judges: ok"
