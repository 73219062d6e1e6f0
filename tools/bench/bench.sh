#!/usr/bin/env bash
# The unet-s CPU benchmark against PyTorch 2.x, eager and torch.compile, in
# one invocation. Each round runs, one after the other,
#   flash bench --threads N                      (OMP_NUM_THREADS=N)
#   unet_torch.py --threads N                    (torch.set_num_threads(N), OMP_NUM_THREADS=N)
#   unet_torch.py --threads N --compile          (the same, torch.compile'd; the
#                                                 first calls, which compile, apart)
# so a change in the machine's load hits all of them; each run prints the
# median of its own timed repeats. After R rounds (default 5) it prints the
# per-round numbers and, for the training step at batch 64 and the NFE at
# batch 1 and at batch 64, the median over the rounds and the ratios
# (PyTorch time / flash time: > 1 means flash is faster), as markdown tables.
#
# PyTorch comes from a virtual environment, --venv DIR (default
# build/torch-venv), made on the first run and reused after: the newest
# torch 2.x from the CPU wheel index, else from the default index (whose
# Linux wheel pulls CUDA libraries, about 3 GB, unused here). When torch
# cannot be installed or imported, the script says so and times flash alone.
# --python PY uses an existing interpreter with torch 2.x instead of the
# venv. A torch of another version already importable by python3 (say the
# distribution's 1.13) is timed too, eager, as one more column; --extra PY
# names another interpreter, --extra none turns it off. Nothing is ever
# installed for that column.
#
# bfloat16: where flash computes in bf16 on this CPU (AVX-512; `flash bench
# --dtype bf16` is tried once), each round also runs
#   flash bench --threads N --dtype bf16
#   unet_torch.py --threads N --modes autocast_bf16   (torch.autocast, bfloat16)
# and a second table compares flash bf16 with flash fp32, with PyTorch's
# autocast and with the best PyTorch fp32 figure. --no-bf16 leaves them out.
#
#   tools/bench/bench.sh [--threads N] [--rounds R] [--flash build/bin/flash]
#                        [--venv DIR | --python PY] [--extra PY|none] [--no-compile] [--no-bf16]
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
FLASH=${FLASH:-$root/build/bin/flash}
venv=$root/build/torch-venv
python=""
extra=auto
threads=2
rounds=5
compile=1
bf16=auto
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --flash) FLASH=$2; shift 2 ;;
    --venv) venv=$2; shift 2 ;;
    --python) python=$2; shift 2 ;;
    --extra) extra=$2; shift 2 ;;
    --no-compile) compile=""; shift ;;
    --no-bf16) bf16=""; shift ;;
    -h|--help) sed -n 2,33p "$0"; exit 0 ;;
    *) echo "bench.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -x "$FLASH" ] || { echo "bench.sh: $FLASH not built" >&2; exit 1; }
case "$threads$rounds" in *[!0-9]*) echo "bench.sh: --threads and --rounds take numbers" >&2; exit 2 ;; esac

torch_version() { "$1" -c 'import torch; print(torch.__version__)' 2>/dev/null; }

# The PyTorch 2.x interpreter: --python, else the venv (made when missing).
if [ -z "$python" ]; then
  python=$venv/bin/python
  if [ -z "$(torch_version "$python")" ]; then
    base=$(command -v python3.11 || command -v python3)
    echo "bench.sh: installing torch 2.x into $venv (log: $venv/install.log)" >&2
    if [ -x "$python" ] || "$base" -m venv "$venv"; then
      { "$venv/bin/pip" install --retries 1 --timeout 30 \
          --index-url https://download.pytorch.org/whl/cpu 'torch>=2,<3' numpy ||
        "$venv/bin/pip" install 'torch>=2,<3' numpy; } > "$venv/install.log" 2>&1 ||
        tail -n 3 "$venv/install.log" >&2
    fi
  fi
fi
tv=$(torch_version "$python")
case "$tv" in
  2.*) ;;
  "") echo "bench.sh: no PyTorch ($python cannot import torch): timing flash alone" >&2; python="" ;;
  *) echo "bench.sh: $python has torch $tv, not 2.x: timing flash alone" >&2; python="" ;;
esac
[ -n "$python" ] || compile=""
if [ "$extra" = auto ]; then
  extra=$(command -v python3 || true)
  ev=$([ -n "$extra" ] && torch_version "$extra")
  { [ -n "$ev" ] && [ "$ev" != "$tv" ]; } || extra=""
elif [ "$extra" = none ]; then
  extra=""
elif [ -z "$(torch_version "$extra")" ]; then
  echo "bench.sh: $extra cannot import torch: no extra column" >&2
  extra=""
fi

if [ -n "$bf16" ] && ! "$FLASH" bench --threads "$threads" --dtype bf16 --repeats 1 --warmup 1 >/dev/null 2>"${TMPDIR:-/tmp}/bench_bf16.$$"; then
  echo "bench.sh: no bf16 here: $(tail -n 1 "${TMPDIR:-/tmp}/bench_bf16.$$")" >&2
  bf16=""
fi
rm -f "${TMPDIR:-/tmp}/bench_bf16.$$"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# One run: label, round, command. Its JSON line goes to runs.tsv; a failed
# run is reported and left out (the summary counts the rounds it has).
run() {
  local label=$1 r=$2
  shift 2
  if OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads "$@" > "$tmp/out" 2> "$tmp/err"; then
    printf '%s\t%s\t%s\n' "$label" "$r" "$(tail -n 1 "$tmp/out")" >> "$tmp/runs.tsv"
  else
    echo "bench.sh: round $r, $label failed:" >&2
    tail -n 5 "$tmp/err" >&2
  fi
}
for r in $(seq 1 "$rounds"); do
  echo "bench.sh: round $r of $rounds" >&2
  run flash "$r" "$FLASH" bench --threads "$threads"
  [ -n "$python" ] && run eager "$r" "$python" "$here/unet_torch.py" --threads "$threads"
  [ -n "$compile" ] && run compile "$r" "$python" "$here/unet_torch.py" --threads "$threads" --compile
  [ -n "$extra" ] && run extra "$r" "$extra" "$here/unet_torch.py" --threads "$threads"
  [ -n "$bf16" ] && run flash_bf16 "$r" "$FLASH" bench --threads "$threads" --dtype bf16
  [ -n "$bf16" ] && [ -n "$python" ] && run autocast "$r" "$python" "$here/unet_torch.py" --threads "$threads" --modes autocast_bf16
done

summary=$(command -v python3 || echo "$python")
"$summary" - "$tmp/runs.tsv" "$threads" "$extra" <<'PY'
import json, statistics, sys
rows = [l.rstrip("\n").split("\t", 2) for l in open(sys.argv[1]) if l.strip()]
want = int(sys.argv[2])
runs = {}
for label, r, js in rows:
    runs.setdefault(label, {})[int(r)] = json.loads(js)
if "flash" not in runs:
    sys.exit("bench.sh: no flash run succeeded")
keys = ("train_step_s", "nfe_b1_s", "nfe_b64_s")
names = {"train_step_s": "training step, batch 64", "nfe_b1_s": "one NFE, batch 1",
         "nfe_b64_s": "one NFE, batch 64"}
def title(label):
    one = next(iter(runs[label].values()))
    v = one.get("version", "?")
    return {"flash": f"flash {v}", "eager": f"PyTorch {v} eager",
            "compile": f"PyTorch {v} torch.compile", "extra": f"PyTorch {v} eager ({sys.argv[3]})",
            "flash_bf16": f"flash {v} bf16", "autocast": f"PyTorch {v} autocast bf16"}[label]
cols = [c for c in ("flash", "eager", "compile", "extra") if c in runs]
bcols = [c for c in ("flash_bf16", "autocast") if c in runs]
for c in cols + bcols:
    for r, j in runs[c].items():
        if j.get("threads") != want:
            print(f"bench.sh: WARNING: {title(c)} round {r} ran {j.get('threads')} threads, not {want}")

print("Per round (each number the median of that run's repeats; seconds):\n")
print("| round | run | train_step_s | nfe_b1_s | nfe_b64_s | first calls (s) |")
print("|---|---|---|---|---|---|")
for r in sorted({r for c in cols for r in runs[c]}):
    for c in cols + bcols:
        j = runs[c].get(r)
        if j:
            first = j.get("first_calls_s", "")
            print(f"| {r} | {title(c)} | " + " | ".join(f"{j[k]:.6f}" for k in keys) + f" | {first} |")

med = {c: {k: statistics.median(j[k] for j in runs[c].values()) for k in keys} for c in cols}
n = {c: len(runs[c]) for c in cols}
print(f"\nMedian over the rounds ({', '.join(f'{title(c)}: {n[c]}' for c in cols)} rounds), "
      f"{want} threads each; ratio = PyTorch time / flash time (> 1: flash is faster), "
      "and in brackets the lowest and highest of the rounds' own ratios:\n")
fmt = lambda s: f"{s * 1e3:.2f} ms" if s < 0.01 else (f"{s * 1e3:.1f} ms" if s < 0.1 else f"{s:.3f} s")
head = "| | flash |" + "".join(f" {title(c).replace('PyTorch ', '')} | ratio |" for c in cols[1:])
print(head)
print("|---" * (1 + len(cols) * 2 - 1) + "|")
out = {"threads": want, "rounds": {c: n[c] for c in cols}}
for k in keys:
    line = f"| {names[k]} | {fmt(med['flash'][k])} |"
    for c in cols[1:]:
        ratio = med[c][k] / med["flash"][k]
        per = [runs[c][r][k] / runs["flash"][r][k] for r in runs[c] if r in runs["flash"]]
        span = f" [{min(per):.2f}-{max(per):.2f}]" if per else ""
        line += f" {fmt(med[c][k])} | {ratio:.2f}x{span} |"
        out[f"ratio_{c}_{k[:-2]}"] = round(ratio, 4)
    print(line)
    for c in cols:
        out[f"{c}_{k}"] = med[c][k]
sgemm = statistics.median(j["sgemm_gflops"] for j in runs["flash"].values())
gflop = next((j["fwd_gflop_per_sample"] for c in cols[1:] for j in runs[c].values()), None)
if gflop:
    B = next(iter(runs["flash"].values()))["batch"]
    # training = forward + backward, about 3 forwards
    per = {"train_step_s": 3 * B * gflop, "nfe_b1_s": gflop, "nfe_b64_s": B * gflop}
    print(f"\nGFLOP/s (forward {gflop} GFLOP per image, training 3x; flash's sgemm {sgemm:.0f} GFLOP/s):")
    for k in keys:
        print(f"  {k:13s} " + "  ".join(f"{c} {per[k] / med[c][k]:6.1f}" for c in cols))
out["sgemm_gflops"] = sgemm
if "flash_bf16" in runs:
    med_b = {c: {k: statistics.median(j[k] for j in runs[c].values()) for k in keys} for c in bcols}
    torch32 = [c for c in cols if c in ("eager", "compile")]
    print(f"\nbfloat16 (median over the rounds; ratio = other time / flash bf16 time, > 1: flash bf16 is "
          f"faster; in brackets the rounds' own ratios):\n")
    head = "| | flash bf16 | flash fp32 | ratio |"
    if "autocast" in bcols:
        head += " PyTorch autocast bf16 | ratio |"
    if torch32:
        head += " best PyTorch fp32 | ratio |"
    print(head)
    print("|---" * (head.count("|") - 1) + "|")
    def cell(c, k, m):
        ratio = m[c][k] / med_b["flash_bf16"][k]
        per = [runs[c][r][k] / runs["flash_bf16"][r][k] for r in runs[c] if r in runs["flash_bf16"]]
        span = f" [{min(per):.2f}-{max(per):.2f}]" if per else ""
        return f" {fmt(m[c][k])} | {ratio:.2f}x{span} |", round(ratio, 4)
    for k in keys:
        line = f"| {names[k]} | {fmt(med_b['flash_bf16'][k])} |"
        s, out[f"ratio_bf16_flash_{k[:-2]}"] = cell("flash", k, med)
        line += s
        if "autocast" in bcols:
            s, out[f"ratio_bf16_autocast_{k[:-2]}"] = cell("autocast", k, med_b)
            line += s
        if torch32:
            best = min(torch32, key=lambda c: med[c][k])
            s, out[f"ratio_bf16_best_torch_{k[:-2]}"] = cell(best, k, med)
            line += s.replace(" |", f" ({best}) |", 1)
        print(line)
        for c in bcols:
            out[f"{c}_{k}"] = med_b[c][k]
print("\n" + json.dumps(out))
PY
