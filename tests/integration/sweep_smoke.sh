#!/usr/bin/env bash
# configs/sweeps/smoke.yaml end to end: 3 methods x 3 step counts x 2 seeds
# on the 2-D exact gmm teacher with two runs at once. Checks results.csv and
# results.json (rows, columns, one row per run and variant), the table's
# marks of differences beyond the spread over seeds (recomputed from the
# rows), the shared noise bank (one file in DIR, none left in the runs),
# then kills a second sweep (SIGKILL) after some runs completed, resumes it
# with --resume and checks that its final table equals the uninterrupted
# one (every column but the timings). tools/repro/sweep_keep.sh keeps the
# finished runs in small files, which give the same table from a new folder.
# Env (set by CTest): FLASH, FLASH_SOURCE_DIR.
: "${FLASH:?}" "${FLASH_SOURCE_DIR:?}"
source "${BASH_SOURCE%/*}/common.bash"
sweep=$FLASH_SOURCE_DIR/configs/sweeps/smoke.yaml

t0=$(date +%s.%N)
"$FLASH" sweep "$sweep" --out "$tmp/a" --jobs 2 >"$tmp/a.table" 2>"$tmp/a.log" || fail "flash sweep: $(tail -5 "$tmp/a.log")"
t1=$(date +%s.%N)
cat "$tmp/a.table"
echo "uninterrupted sweep: $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s"

for f in results.csv results.json table.md table.csv report.html noise_bank.npy; do
  [[ -s $tmp/a/$f ]] || fail "no $f"
done
(($(ls "$tmp/a/runs" | wc -l) == 9)) || fail "expected 9 run folders: $(ls "$tmp/a/runs")"
(($(ls "$tmp"/a/runs/*/DONE | wc -l) == 9)) || fail "not every run has DONE"
ls "$tmp"/a/runs/*/noise_bank.npy >/dev/null 2>&1 && fail "a run kept its own copy of the noise bank"

python3 - "$tmp/a" <<'PY' || fail "results.csv / results.json"
import csv, json, sys
d = sys.argv[1]
rows = list(csv.DictReader(open(d + "/results.csv")))
need = ["run", "method", "variant", "model", "seed", "steps", "nfe", "status", "sliced_wasserstein", "gmm_nll",
        "sample_seconds", "ms_per_sample", "distill_seconds"]
missing = [c for c in need if c not in rows[0]]
assert not missing, f"missing columns {missing}"
# teacher 25/1/2/3 once; imagine_flash and its no_nc resampling at 1/2/3 x 2 seeds; lcm 3/2/1 x 2 seeds
assert len(rows) == 4 + 12 + 6, f"{len(rows)} rows"
assert all(r["status"] == "ok" for r in rows), [r for r in rows if r["status"] != "ok"]
count = {}
for r in rows:
    count[r["method"]] = count.get(r["method"], 0) + 1
    assert int(r["steps"]) == int(float(r["nfe"])), r
    assert float(r["sliced_wasserstein"]) > 0 and float(r["ms_per_sample"]) > 0, r
assert count == {"teacher_dpmpp": 4, "imagine_flash": 6, "imagine_flash_no_nc": 6, "lcm": 6}, count
assert {r["seed"] for r in rows if r["method"] == "lcm"} == {"0", "1"}
assert {r["seed"] for r in rows if r["method"] == "teacher_dpmpp"} == {""}
j = json.load(open(d + "/results.json"))
assert len(j["rows"]) == len(rows) and j["runs"] == {"ok": 9, "failed": 0, "unfinished": 0}, j["runs"]
assert j["baseline"] == "teacher_dpmpp_25"
t = {e["variant"]: e for e in j["table"]}
assert len(t) == 4 + 6 + 3, sorted(t)
assert t["teacher_dpmpp_25"]["metrics"]["sliced_wasserstein"]["pct"] == 100
assert t["lcm_2"]["seeds"] == 2 and t["teacher_dpmpp_3"]["seeds"] == 1
# the spread over seeds is the sample standard deviation of the two rows
v = [float(r["sliced_wasserstein"]) for r in rows if r["variant"] == "lcm_2"]
m = sum(v) / 2
sd = (sum((x - m) ** 2 for x in v)) ** 0.5
e = t["lcm_2"]["metrics"]["sliced_wasserstein"]
assert abs(e["mean"] - m) < 1e-6 * abs(m) and abs(e["sd"] - sd) < 1e-6 * max(sd, 1e-12), (e, m, sd)
# the teacher is 100%: every other row's percentage is its ratio to it
b = t["teacher_dpmpp_25"]["metrics"]["sliced_wasserstein"]["mean"]
p = 100 * t["lcm_1"]["metrics"]["sliced_wasserstein"]["mean"] / b
assert abs(t["lcm_1"]["metrics"]["sliced_wasserstein"]["pct"] - p) < 1e-7 * p
# differences beyond the spread, recomputed from the rows: mean +- 2 SE
# intervals over seeds that do not overlap (SE = SD / sqrt(seeds)); the
# teacher's rows train nothing and count as exact, two of them are not compared
model = {r["variant"]: r["model"] for r in rows}
md = open(d + "/table.md").read()
table_md = {l.split(" | ")[1]: l for l in md.splitlines() if l.startswith("| ")}
for k in ["sliced_wasserstein", "gmm_nll"]:
    v = {}
    for r in rows:
        v.setdefault(r["variant"], []).append(float(r[k]))
    def se(n):
        x = v[n]
        if model[n] == "teacher":
            return 0.0
        m = sum(x) / len(x)
        return (sum((y - m) ** 2 for y in x) / (len(x) - 1)) ** 0.5 / len(x) ** 0.5
    def sig(a, b):
        if model[a] == "teacher" and model[b] == "teacher":
            return "no spread"
        ma, mb = t[a]["metrics"][k]["mean"], t[b]["metrics"][k]["mean"]
        return "beyond" if abs(ma - mb) > 2 * (se(a) + se(b)) else "within"
    ranked = sorted(t, key=lambda n: t[n]["metrics"][k]["mean"])  # lower is better for both
    marks = {"beyond": 0}
    for i, n in enumerate(ranked):  # both sorts are stable: ties keep the table's order
        e = t[n]["metrics"][k]
        want_b = None if n == "teacher_dpmpp_25" else sig(n, "teacher_dpmpp_25")
        want_n = sig(n, ranked[i + 1]) if i + 1 < len(ranked) else None
        assert (e["rank"], e["vs_baseline"], e["vs_next"]) == (i + 1, want_b, want_n), (k, n, e, want_b, want_n)
        cell = table_md[n].split(" | ")[6 + 2 * ["sliced_wasserstein", "gmm_nll", "gmm_entropy"].index(k)]
        assert ("†" in cell) == (want_b == "beyond"), (n, k, cell, want_b)
        marks["beyond"] += want_b == "beyond"
    assert marks["beyond"] > 0, f"no {k} row beyond the spread of the teacher"
assert "mean ± 2 SE intervals do not overlap" in md, md
PY

# A second sweep, killed once three runs are complete.
"$FLASH" sweep "$sweep" --out "$tmp/b" --jobs 2 >/dev/null 2>"$tmp/b.log" &
pid=$!
for _ in $(seq 600); do
  (($(ls "$tmp"/b/runs/*/DONE 2>/dev/null | wc -l) >= 3)) && break
  sleep 0.1
done
kill -KILL "$pid"
wait "$pid" 2>/dev/null || true
done_before=$(ls "$tmp"/b/runs/*/DONE 2>/dev/null | wc -l)
partial=0
for d in "$tmp"/b/runs/*/; do
  [[ ! -f $d/DONE ]] && ls "$d"/*/checkpoint.safetensors >/dev/null 2>&1 && partial=$((partial + 1))
done
echo "killed after $done_before of 9 runs ($partial interrupted with a checkpoint to continue from)"
((done_before >= 3 && done_before < 9)) || fail "the kill came at the wrong time ($done_before runs done)"
sleep 0.5
# the runs died with the sweep: nothing writes into b any more
before=$(find "$tmp/b" -type f -newer "$tmp/b.log" | wc -l)
sleep 1
after=$(find "$tmp/b" -type f -newer "$tmp/b.log" | wc -l)
((before == after)) || fail "runs kept writing after the sweep was killed"
"$FLASH" sweep "$sweep" --out "$tmp/b" --jobs 2 >/dev/null 2>"$tmp/b.err" && fail "a second sweep without --resume reused the folders"
grep -q -- "--resume" "$tmp/b.err" || fail "no hint at --resume: $(cat "$tmp/b.err")"
t0=$(date +%s.%N)
"$FLASH" sweep "$sweep" --out "$tmp/b" --jobs 2 --resume >/dev/null 2>"$tmp/b.log" || fail "resume: $(tail -5 "$tmp/b.log")"
t1=$(date +%s.%N)
echo "resumed sweep: $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s"
grep -q "$done_before of 9 runs already complete" "$tmp/b.log" || fail "completed runs were not skipped: $(head -3 "$tmp/b.log")"

python3 - "$tmp/a/results.csv" "$tmp/b/results.csv" <<'PY' || fail "the resumed table differs from the uninterrupted one"
import csv, sys
timing = {"sample_seconds", "ms_per_sample", "distill_seconds"}
def load(p):
    return [{k: v for k, v in r.items() if k not in timing} for r in csv.DictReader(open(p))]
a, b = load(sys.argv[1]), load(sys.argv[2])
assert a == b, "\n".join(f"{x}\n{y}" for x, y in zip(a, b) if x != y)
print(f"resumed table equals the uninterrupted one ({len(a)} rows)")
PY

# tools/repro/sweep_keep.sh: the finished runs in small files, put back into
# a new sweep folder, make the same table and leave nothing to run
keep=$FLASH_SOURCE_DIR/tools/repro/sweep_keep.sh
FLASH=$FLASH bash "$keep" "$tmp/a" "$tmp/k" 2>"$tmp/k.log" || fail "sweep_keep: $(cat "$tmp/k.log")"
(($(ls "$tmp"/k/runs/*/DONE | wc -l) == 9)) || fail "sweep_keep did not keep 9 runs"
heavy=$(find "$tmp/k" -name '*.safetensors' -o -name '*.npy' | head -3)
[[ -z $heavy ]] || fail "sweep_keep kept checkpoints or samples: $heavy"
# keeping a sweep in itself would replace its runs with their small files
for bad in "$tmp/a" "$tmp/a/kept"; do
  rc=0
  FLASH=$FLASH bash "$keep" "$tmp/a" "$bad" 2>/dev/null || rc=$?
  ((rc == 2)) || fail "sweep_keep into $bad: exit $rc, want 2"
done
[[ -n $(find "$tmp/a/runs" -name '*.npy' | head -1) ]] || fail "sweep_keep into itself lost the samples"
# an interrupted restore's part folder is started again, not nested into
id=$(basename "$(ls -d "$tmp"/k/runs/*/ | head -1)")
mkdir -p "$tmp/c/runs/.$id.part/$id"
FLASH=$FLASH bash "$keep" --restore "$tmp/k" "$tmp/c" 2>"$tmp/c.log" || fail "restore: $(cat "$tmp/c.log")"
[[ -f $tmp/c/runs/$id/DONE && ! -e $tmp/c/runs/$id/$id && ! -e $tmp/c/runs/.$id.part ]] ||
  fail "restore over a leftover part: $(find "$tmp/c/runs/$id" -maxdepth 2 | head)"
"$FLASH" sweep "$sweep" --out "$tmp/c" --jobs 2 --resume >/dev/null 2>"$tmp/c.log" || fail "resume kept: $(tail -5 "$tmp/c.log")"
grep -q "9 of 9 runs already complete" "$tmp/c.log" || fail "the kept runs were not skipped: $(head -3 "$tmp/c.log")"
python3 - "$tmp/a/results.csv" "$tmp/k/results.csv" "$tmp/c/results.csv" <<'PY' || fail "the kept runs make another table"
import csv, sys
timing = {"sample_seconds", "ms_per_sample", "distill_seconds"}
a, k, c = ([{x: v for x, v in r.items() if x not in timing} for r in csv.DictReader(open(p))] for p in sys.argv[1:])
assert a == k == c, "the tables differ"
print(f"kept runs give the same table ({len(a)} rows)")
PY
echo "PASS"
