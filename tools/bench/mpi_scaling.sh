#!/usr/bin/env bash
# Data-parallel scaling on one machine: `mpirun -np 2` with one thread per
# rank against `mpirun -np 1` with one thread, the same global batch, on
#   (a) training the unet-s teacher (configs/teacher/fmnist_unet_s.yaml) and
#   (b) the quickstart's Imagine Flash distillation with its discriminator
#       (the flags of tests/integration/mpi_data_parallel.sh).
# np=1 and np=2 alternate, the order flipping each round, so a drift in the
# machine's load hits both. Per run, the wall time per step is the mean of
# metrics.jsonl's step_s after the first logged interval (which holds the
# first step's allocations); the table gives the median over rounds. The
# np=2 runs' "gradient all-reduce" line (core/train/loop.c) gives the
# all-reduce's time, its share of the step time and the bytes moved per
# step. That time includes waiting for the other rank; the all-reduce
# alone (flash_comm_allreduce_sum after a barrier, the median of 30 calls)
# is measured apart, for a range of sizes, by a small program built here
# against libflash. A benchmark, not a test: it checks nothing.
#
#   tools/bench/mpi_scaling.sh [OUT.md] [--rounds R] [--train-steps N] [--distill-steps M]
#                              [--quiet-wait S] [--pause PID]...
#
# OUT.md defaults to results/bench/mpi_scaling.md. --pause PID stops that
# process (kill -STOP) while each timed run executes and resumes it after
# (kill -CONT, also when this script fails or is interrupted), for a
# background job that would disturb the timings. Before each run the
# script waits up to S seconds (default 30) for the machine to fall idle
# (under 0.2 cores busy over a second), and it records what other
# processes used during each run (the machine's busy CPU time from
# /proc/stat less the run's own, in cores): the per-round table shows it,
# so a disturbed run can be told apart.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
FLASH=${FLASH:-$root/build/bin/flash}
COMM_LIB=${COMM_LIB:-$(dirname "$FLASH")/../lib/libflash_comm_mpi.so}
out=$root/results/bench/mpi_scaling.md
rounds=5
quiet=30
train_steps=25
distill_steps=400
pause=()
invocation="tools/bench/mpi_scaling.sh $*"
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --train-steps) train_steps=$2; shift 2 ;;
    --distill-steps) distill_steps=$2; shift 2 ;;
    --quiet-wait) quiet=$2; shift 2 ;;
    --pause) pause+=("$2"); shift 2 ;;
    -h|--help) sed -n 2,29p "$0"; exit 0 ;;
    -*) echo "mpi_scaling.sh: unknown argument $1" >&2; exit 2 ;;
    *) out=$1; shift ;;
  esac
done
command -v "${CC:-cc}" >/dev/null || { echo "mpi_scaling.sh: no C compiler (\$CC)" >&2; exit 1; }
command -v mpirun >/dev/null || { echo "mpi_scaling.sh: no mpirun (tools/setup.sh installs Open MPI)" >&2; exit 1; }
[ -x "$FLASH" ] || { echo "mpi_scaling.sh: $FLASH not built" >&2; exit 1; }
[ -f "$COMM_LIB" ] || { echo "mpi_scaling.sh: $COMM_LIB not built (MPI missing at configure time?)" >&2; exit 1; }
[[ $quiet =~ ^[0-9]+$ ]] || { echo "mpi_scaling.sh: --quiet-wait '$quiet' is not a count of seconds" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "mpi_scaling.sh: needs /usr/bin/time (apt-get install time)" >&2; exit 1; }
for n in "$rounds" "$train_steps" "$distill_steps"; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "mpi_scaling.sh: '$n' is not a positive count" >&2; exit 2; }
done

tmp=$(mktemp -d)
resume() {
  local p
  for p in "${pause[@]}"; do kill -CONT "$p" 2>/dev/null || true; done
}
trap 'resume; rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

export OMP_WAIT_POLICY=passive
cd "$root"
load0=$(cut -d' ' -f1-3 /proc/loadavg)
# log_every 5: the first interval is left out of the step time; run()
# reads these two arrays by name
# shellcheck disable=SC2034
train=(train configs/teacher/fmnist_unet_s.yaml --set threads=1 --set "train.steps=$train_steps"
  --set train.warmup_steps=5 --set train.eval_every=0 --set train.eval_batches=1 --set train.log_every=5)
# shellcheck disable=SC2034
distill=(distill configs/quickstart.yaml --set threads=1 --set "train.steps=$distill_steps"
  --set train.batch_size=128 --set train.warmup_steps=5 --set train.log_every=5 --set train.ckpt_every=0)

hz=$(getconf CLK_TCK)
busy() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
timed() { # NAME COMMAND...: runs it with the paused processes stopped; NAME.time holds
  # "wall user sys", NAME.other the cores other processes used meanwhile
  local name=$1 p rc=0 b0 b1 end=$((SECONDS + quiet))
  shift
  for p in "${pause[@]}"; do kill -STOP "$p"; done
  while ((SECONDS < end)); do
    b0=$(busy)
    sleep 1
    (($(busy) - b0 < hz / 5)) && break
  done
  b0=$(busy)
  /usr/bin/time -f "%e %U %S" -o "$tmp/$name.time" "$@" || rc=$?
  b1=$(busy)
  resume
  awk -v b="$((b1 - b0))" -v hz="$hz" '{o = (b / hz - $2 - $3) / $1; printf "%.2f\n", (o > 0 ? o : 0)}' \
    "$tmp/$name.time" >"$tmp/$name.other"
  return $rc
}
run() { # WORKLOAD NP ROUND
  local w=$1 np=$2 r=$3 rc=0
  local -n args=$w
  timed "$w-$np-$r" mpirun --allow-run-as-root --oversubscribe -np "$np" "$FLASH" "${args[@]}" \
    --out "$tmp/$w-$np-$r" >/dev/null 2>"$tmp/$w-$np-$r.log" || rc=$?
  ((rc == 0)) || { echo "mpi_scaling.sh: $w np=$np failed: $(tail -3 "$tmp/$w-$np-$r.log")" >&2; exit 1; }
  echo "  $w np=$np round $r done (other processes: $(cat "$tmp/$w-$np-$r.other") cores)" >&2
}
# the all-reduce alone: rank 0's median time of `reps` calls on n floats,
# each after a barrier so no rank waits for another's compute
cat >"$tmp/allreduce.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include "flash/comm.h"
#include "flash/flash.h"
static int cmp(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
int main(int argc, char **argv)
{
    flash_error e = {0};
    flash_comm *c = flash_comm_world(&e);
    if (!c || argc < 3) return fprintf(stderr, "allreduce: %s\n", c ? "usage: allreduce REPS N..." : e.msg), 1;
    const int reps = atoi(argv[1]);
    double *t = malloc((size_t)reps * sizeof *t);
    for (int a = 2; a < argc && t; a++) {
        const size_t n = strtoull(argv[a], NULL, 10);
        float *buf = calloc(n, sizeof *buf);
        if (!buf) return 1;
        for (int i = 0; i < reps; i++) {
            if (flash_comm_barrier(c, &e)) return fprintf(stderr, "%s\n", e.msg), 1;
            const double t0 = flash_now();
            if (flash_comm_allreduce_sum(c, buf, n, &e)) return fprintf(stderr, "%s\n", e.msg), 1;
            t[i] = flash_now() - t0;
        }
        qsort(t, (size_t)reps, sizeof *t, cmp);
        if (flash_comm_rank(c) == 0) printf("%zu %.9f\n", n, t[reps / 2]);
        free(buf);
    }
    free(t);
    flash_comm_finalize();
    return 0;
}
C
lib=$(cd "$(dirname "$COMM_LIB")" && pwd)
"${CC:-cc}" -std=c11 -O2 -Wall -Wextra -I"$root/include" "$tmp/allreduce.c" -o "$tmp/allreduce" -L"$lib" -lflash \
  -Wl,-rpath,"$lib"
# unet-s, the quickstart's student + discriminator, and powers of ten
ar_sizes=(1 1000 10000 87939 100000 572449 1000000 10000000)
timed allreduce mpirun --allow-run-as-root --oversubscribe -np 2 "$tmp/allreduce" 30 "${ar_sizes[@]}" >"$tmp/allreduce.txt" \
  2>"$tmp/allreduce.log" || { echo "mpi_scaling.sh: the all-reduce probe failed: $(cat "$tmp/allreduce.log")" >&2; exit 1; }
echo "  all-reduce alone done (other processes: $(cat "$tmp/allreduce.other") cores)" >&2

for r in $(seq 1 "$rounds"); do
  if ((r % 2)); then order="1 2"; else order="2 1"; fi
  for w in train distill; do
    for np in $order; do run "$w" "$np" "$r"; done
  done
done

cmd() { # WORKLOAD NP: the command as run, for the record
  local -n args=$1
  echo "OMP_WAIT_POLICY=passive mpirun --allow-run-as-root --oversubscribe -np $2 build/bin/flash ${args[*]} --out DIR"
}
{
  echo "date=$(date -u +%Y-%m-%dT%H:%MZ)"
  echo "cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)"
  echo "cores=$(nproc)"
  echo "load=$load0 at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
  echo "commit=$(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown)"
  echo "mpi=$(mpirun --version 2>/dev/null | head -1)"
  echo "cmd_bench=$invocation"
  echo "cmd_train_1=$(cmd train 1)"
  echo "cmd_train_2=$(cmd train 2)"
  echo "cmd_distill_1=$(cmd distill 1)"
  echo "cmd_distill_2=$(cmd distill 2)"
} >"$tmp/meta"

mkdir -p "$(dirname "$out")"
python3 - "$tmp" "$rounds" "$out" <<'PY'
import json, os, re, statistics, sys
tmp, rounds, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
meta = dict(l.rstrip("\n").split("=", 1) for l in open(os.path.join(tmp, "meta")))

def step_s(run):
    rows = [json.loads(l) for l in open(os.path.join(tmp, run, "metrics.jsonl")) if '"loss"' in l]
    # every interval after the first, weighted by its steps
    steps = [b["step"] - a["step"] for a, b in zip(rows, rows[1:])]
    return sum(n * b["step_s"] for n, b in zip(steps, rows[1:])) / sum(steps)

def log(run):
    text = open(os.path.join(tmp, run + ".log")).read()
    params = int(re.search(r"\((\d+) parameters\)", text).group(1))
    m = re.search(r"gradient all-reduce: ([\d.]+) s over (\d+) steps \(([\d.]+)% of the step time\), (\d+) bytes per step",
                  text)
    ar = (float(m.group(1)) / int(m.group(2)), float(m.group(3)), int(m.group(4))) if m else None
    batch = int(re.search(r"steps of (\d+)", text).group(1))
    return params, batch, ar

names = {"train": "train unet-s (Fashion-MNIST)", "distill": "distill quickstart (backward + discriminator)"}
QUIET = 0.25  # cores other processes may use for a run to count as undisturbed
runs = {}
for w in ("train", "distill"):
    for np in (1, 2):
        for r in range(1, rounds + 1):
            name = f"{w}-{np}-{r}"
            other = float(open(os.path.join(tmp, name + ".other")).read())
            runs[w, np, r] = (step_s(name), other, log(name))

def row(w, keep):
    """The workload's line over the rounds keep(other) accepts; None if a np has none."""
    sel = {np: [runs[w, np, r] for r in range(1, rounds + 1) if keep(runs[w, np, r][1])] for np in (1, 2)}
    if not sel[1] or not sel[2]:
        return f"| {names[w]} | no such runs at np=1 or np=2 |"
    med = {np: statistics.median(x[0] for x in v) for np, v in sel.items()}
    params, batch, _ = sel[1][0][2]
    ars = [x[2][2] for x in sel[2]]
    ar_s = statistics.median(a[0] for a in ars)
    share = statistics.median(a[1] for a in ars)
    nbytes = ars[0][2]
    floats = nbytes // 8  # 2 (N - 1) copies of 4 bytes per float at N = 2
    return (f"| {names[w]} | {len(sel[1])} / {len(sel[2])} | {batch} | {params:,} | {floats:,} | {med[1]:.4f} | "
            f"{med[2]:.4f} | {med[1] / med[2]:.2f}x | {ar_s * 1e3:.2f} | {share:.1f}% | {nbytes:,} | "
            f"{nbytes / ar_s / 1e6:.0f} | {med[1] / batch * 1e3:.3f} |")

head = [
    "| workload | runs np=1 / np=2 | global batch | trained params | floats all-reduced / step | step s, np=1 "
    "| step s, np=2 | speed-up | all-reduce ms / step | all-reduce share of np=2 step | bytes moved / step | MB/s | "
    "compute ms / sample (np=1) |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
]
table = head + [row(w, lambda o: o < QUIET) for w in ("train", "distill")]
table_all = head + [row(w, lambda o: True) for w in ("train", "distill")]
detail = []
for w in ("train", "distill"):
    for np in (1, 2):
        detail.append(f"| {w} | {np} | " + " | ".join(f"{runs[w, np, r][0]:.4f} ({runs[w, np, r][1]:.2f})"
                                                     for r in range(1, rounds + 1)) + " |")
# the all-reduce alone; t = alpha + bytes / B with alpha the smallest
# size's time (latency) and B the slope between the two largest (the rate
# once the buffers leave the caches)
probe = [tuple(float(x) for x in l.split()) for l in open(os.path.join(tmp, "allreduce.txt"))]
alpha = probe[0][1]
(n1, t1), (n2, t2) = probe[-2], probe[-1]
slope = (t2 - t1) / (8 * (n2 - n1))
alone = ["| floats | bytes moved | ms | MB/s |", "|---:|---:|---:|---:|"] + [
    f"| {int(n):,} | {int(8 * n):,} | {t * 1e3:.3f} | {8 * n / t / 1e6:.0f} |" for n, t in probe]
fit = (f"Latency (1 float): {alpha * 1e6:.1f} us; rate between the two largest sizes: "
       f"{1 / slope / 1e9:.2f} GB/s of bytes moved.")
per_round = ["| workload | np | " + " | ".join(f"round {r}" for r in range(1, rounds + 1)) + " |",
             "|---|---:|" + "---:|" * rounds] + detail
doc = f"""# Data-parallel scaling on one machine (tools/bench/mpi_scaling.sh)

{meta['date']}, {meta['cpu']}, {meta['cores']} cores, {meta['mpi']}, flash {meta['commit']};
load average (1, 5, 15 min) {meta['load']}.
One thread per rank; np=1 and np=2 alternate over {rounds} rounds (order flipped each round);
medians over the rounds. Step time: metrics.jsonl's step_s after the first logged interval.
All-reduce: the np=2 runs' `gradient all-reduce` line (core/train/loop.c): the wall time of the
gradient all-reduce calls (student and discriminator), waiting for the other rank included, and
its share of the steps' wall time. Bytes moved: the gather of the N - 1 other ranks' gradients to
rank 0 plus the broadcast of the sum, 2 (N - 1) x 4 bytes x the floats all-reduced.
MB/s: bytes moved / all-reduce time, a lower bound on the transfer rate. Compute per sample:
the np=1 step time (one thread) over the global batch.

Undisturbed runs (other processes used under {QUIET} cores during the run; this machine is shared):

{chr(10).join(table)}

All {rounds} rounds:

{chr(10).join(table_all)}

The all-reduce alone at np=2 (flash_comm_allreduce_sum after a barrier, rank 0's median of 30
calls; bytes moved = 8 x floats; other processes used {open(os.path.join(tmp, "allreduce.other")).read().strip()} cores meanwhile):

{chr(10).join(alone)}

{fit}

Step seconds per round (in brackets: the cores other processes used during the run):

{chr(10).join(per_round)}

Commands:

```sh
{meta['cmd_bench']}
{meta['cmd_train_1']}
{meta['cmd_train_2']}
{meta['cmd_distill_1']}
{meta['cmd_distill_2']}
```
"""
tmp_out = out + ".tmp"
with open(tmp_out, "w") as f:
    f.write(doc)
os.replace(tmp_out, out)
print(doc)
PY
