#!/usr/bin/env bash
# An interval beside a metric in the report's tables: a report's own
# results.json (rows alone, as results/table1/) whose rows carry fd, fd_lo,
# fd_hi (fd's `bootstrap:`) and the same for a second judge (fd_b_lo ...),
# rebuilt with `flash report`. The bounds are not columns of their own in
# table.md or report.html but follow their metric's value, "[lo, hi]", the
# means of the per-seed bounds on a row of several seeds, after the mean ±
# sd; a row without bounds shows none; the caption says what they are;
# results.csv keeps every bound as measured.
# Env (set by CTest): FLASH, FLASH_SOURCE_DIR.
: "${FLASH:?}" "${FLASH_SOURCE_DIR:?}"
source "${BASH_SOURCE%/*}/common.bash"

mkdir "$tmp/in"
python3 - "$tmp/in/results.json" <<'PY'
import json, sys
def row(run, method, variant, model, seed, steps, m):
    return {"run": run, "method": method, "variant": variant, "model": model, "seed": seed, "guidance": None,
            "status": "ok", "steps": steps, "nfe": steps, "sample_seconds": 1.0, "ms_per_sample": 0.5,
            "distill_seconds": None, "metrics": m}
rows = [
    row("teacher", "teacher_dpmpp", "teacher_dpmpp_25", "teacher", None, 25,
        {"fd": 1.25, "fd_lo": 1.125, "fd_hi": 1.375, "class_acc": 0.9, "fd_b": 3.5, "fd_b_lo": 3.25, "fd_b_hi": 3.75}),
    row("s0", "student", "student_3", "student", 0, 3,
        {"fd": 2.0, "fd_lo": 1.8, "fd_hi": 2.2, "class_acc": 0.8, "fd_b": 4.0, "fd_b_lo": 3.5, "fd_b_hi": 4.5}),
    row("s1", "student", "student_3", "student", 1, 3,
        {"fd": 2.2, "fd_lo": 2.0, "fd_hi": 2.4, "class_acc": 0.82, "fd_b": 4.5, "fd_b_lo": 4.0, "fd_b_hi": 5.0}),
    row("o0", "other", "other_1", "student", 0, 1, {"fd": 3.0, "class_acc": 0.7, "fd_b": 5.0}),
]
names = ["fd", "fd_lo", "fd_hi", "class_acc", "fd_b", "fd_b_lo", "fd_b_hi"]
json.dump({"metrics": names, "baseline": "teacher_dpmpp_25", "runs": {"ok": 4, "failed": 0, "unfinished": 0},
           "rows": rows, "table": []}, open(sys.argv[1], "w"))
PY
"$FLASH" report "$tmp/in" --out "$tmp/r" >"$tmp/table" 2>"$tmp/log" || fail "flash report: $(cat "$tmp/log")"

python3 - "$tmp/r" <<'PY' || fail "the interval cells"
import csv, sys
d = sys.argv[1]
md = open(d + "/table.md").read()
lines = [l for l in md.splitlines() if l.startswith("| ")]
head = [c.strip() for c in lines[0].strip("|").split("|")]
assert "fd_lo" not in head and "fd_hi" not in head and "fd_b_lo" not in head, head
assert head[6:] == ["fd", "fd %", "class_acc", "class_acc %", "fd_b", "fd_b %"], head
cells = {}
for l in lines[1:]:
    c = [x.strip() for x in l.strip("|").split("|")]
    cells[c[1]] = dict(zip(head, c))
assert cells["teacher_dpmpp_25"]["fd"].startswith("1.25 [1.125, 1.375]"), cells["teacher_dpmpp_25"]
assert cells["teacher_dpmpp_25"]["fd_b"].startswith("3.5 [3.25, 3.75]"), cells["teacher_dpmpp_25"]
# two seeds: mean ± sd, then the mean of each bound over the seeds
fd = cells["student_3"]["fd"]
assert fd.startswith("2.1 ± 0.1414 [1.9, 2.3]"), fd
assert cells["student_3"]["fd_b"].startswith("4.25 ± 0.3536 [3.75, 4.75]"), cells["student_3"]
assert cells["student_3"]["class_acc"].startswith("0.81 ± 0.01414") and "[" not in cells["student_3"]["class_acc"]
assert cells["other_1"]["fd"] == "3", cells["other_1"]  # no bounds: no interval
assert "[lo, hi] after fd, fd_b: the 95% bootstrap interval over the noise bank" in md, md
assert "mean over seeds of the per-seed bounds" in md, md
sig = [l for l in md.splitlines() if l.startswith("Differences beyond")][0]
assert "fd_lo" not in sig and "fd, fd_b" in sig, sig
rows = list(csv.DictReader(open(d + "/results.csv")))
assert [r["fd_lo"] for r in rows] == ["1.125", "1.8", "2", ""], [r["fd_lo"] for r in rows]
html = open(d + "/report.html").read()
assert "<th>fd_lo</th>" not in html and "<td>2.1 &plusmn; 0.1414 [1.9, 2.3]" in html, "html cells"
assert "[lo, hi] after fd, fd_b" in html
PY
echo PASS
