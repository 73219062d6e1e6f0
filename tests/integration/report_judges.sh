#!/usr/bin/env bash
# A second judge in the report: rows that fd (the first evaluator's
# features) and fd_b (a second evaluator's, `suffix: _b`) rank oppositely
# are listed under the table, in table.md and report.html; pairs the two
# agree on are not, and a metric's own further values (kid and kid_sd,
# diversity and diversity_min) are not taken for a second judge.
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
    row("t", "teacher_25", "teacher", None, {"fd": 1.0, "fd_b": 10.0, "kid": 0.1, "kid_sd": 0.5}),
    # fd ranks alpha before beta, fd_b beta before alpha: one feature space only
    row("a", "alpha_3", "student", 0, {"fd": 2.0, "fd_b": 30.0, "kid": 0.2, "kid_sd": 0.1}),
    row("b", "beta_3", "student", 0, {"fd": 3.0, "fd_b": 20.0, "kid": 0.3, "kid_sd": 0.9}),
    # gamma is behind both in both spaces
    row("c", "gamma_3", "student", 0, {"fd": 4.0, "fd_b": 40.0, "kid": 0.4, "kid_sd": 0.2}),
]
json.dump({"metrics": ["fd", "fd_b", "kid", "kid_sd"], "baseline": "teacher_25",
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
echo "report_judges: ok"
