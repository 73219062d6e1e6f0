#!/usr/bin/env bash
# The unet-s benchmark against the PyTorch CPU peer, in one invocation:
# runs `flash bench` and tools/bench/unet_torch.py with the same thread
# count, one after the other (three rounds, alternating, so a change in the
# machine's load hits both), and prints both JSON lines of the best round,
# the ratios (PyTorch time / flash time: > 1 means flash is faster) and
# the achieved GFLOP/s of each against flash's measured sgemm rate.
#
#   tools/bench/bench.sh [--threads N] [--rounds R] [--flash build/bin/flash] [--python python3]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
FLASH=${FLASH:-$root/build/bin/flash}
PYTHON=${PYTHON:-python3}
threads=2
rounds=3
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --flash) FLASH=$2; shift 2 ;;
    --python) PYTHON=$2; shift 2 ;;
    -h|--help) sed -n 2,9p "$0"; exit 0 ;;
    *) echo "bench.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -x "$FLASH" ] || { echo "bench.sh: $FLASH not built" >&2; exit 1; }
"$PYTHON" -c "import torch" 2>/dev/null || { echo "bench.sh: $PYTHON has no torch (pip install torch, or apt-get install python3-torch)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for r in $(seq 1 "$rounds"); do
  OMP_NUM_THREADS=$threads "$FLASH" bench --threads "$threads" >> "$tmp/flash.jsonl"
  OMP_NUM_THREADS=$threads "$PYTHON" "$here/unet_torch.py" --threads "$threads" >> "$tmp/torch.jsonl"
done

"$PYTHON" - "$tmp/flash.jsonl" "$tmp/torch.jsonl" <<'PY'
import json, sys
def load(p):
    return [json.loads(l) for l in open(p) if l.strip()]
fl, pt = load(sys.argv[1]), load(sys.argv[2])
keys = ("train_step_s", "nfe_b1_s", "nfe_b64_s")
# best (minimum) of the per-round medians: the least disturbed round
best = lambda rows: {k: min(r[k] for r in rows) for k in keys}
f, p = best(fl), best(pt)
print("flash  ", json.dumps(dict(fl[0], **f)))
print("pytorch", json.dumps(dict(pt[0], **p)))
gflop = pt[0].get("fwd_gflop_per_sample")
peak = max(r.get("sgemm_gflops", 0) for r in fl)
B = fl[0]["batch"]
print(f"{'':14s} {'flash':>10s} {'pytorch':>10s} {'speedup':>8s}   GFLOP/s flash / pytorch (sgemm peak {peak:.0f})")
for k in keys:
    # training = forward + backward ~ 3 forwards
    n = 3 * B if k == "train_step_s" else (1 if k == "nfe_b1_s" else B)
    rate = lambda t: gflop * n / t if gflop else float("nan")
    print(f"{k:14s} {f[k]:10.4f} {p[k]:10.4f} {p[k] / f[k]:7.2f}x   {rate(f[k]):6.1f} / {rate(p[k]):6.1f}")
print(json.dumps({"ratio_train_step": p["train_step_s"] / f["train_step_s"],
                  "ratio_nfe_b1": p["nfe_b1_s"] / f["nfe_b1_s"],
                  "ratio_nfe_b64": p["nfe_b64_s"] / f["nfe_b64_s"],
                  "sgemm_gflops": peak, "threads": fl[0]["threads"]}))
PY
