#!/usr/bin/env bash
# Data-parallel training and distillation under mpirun (comm.h): np=2
# matches np=1 (first logged loss within 1e-3 relative, every logged loss
# within 2%), a given rank count is bit-reproducible, rank 0 alone writes
# the run folder, a run resumes on another rank count (and says so), the
# gradients of a device run are summed, sampling and evaluation sharded
# over ranks give one process's result, and one rank's
# failure stops every rank with its rank named, without a hang.
# Env (set by CTest): FLASH, FLASH_SOURCE_DIR, FLASH_BINARY_DIR.
: "${FLASH:?}" "${FLASH_SOURCE_DIR:?}" "${FLASH_BINARY_DIR:?}"
source "$(dirname "$0")/common.bash"
if ! command -v mpirun >/dev/null || [[ ! -f $FLASH_BINARY_DIR/lib/libflash_comm_mpi.so ]]; then
  echo "SKIP: no MPI (tools/setup.sh installs Open MPI)"
  exit 0
fi
export OMP_WAIT_POLICY=passive
mpi() { # NP, then the flash arguments
  local np=$1
  shift
  timeout 300 mpirun --allow-run-as-root --oversubscribe -np "$np" "$FLASH" "$@"
}
compare() { # two metrics.jsonl files
  python3 - "$1" "$2" <<'PY'
import json, sys
a, b = ([json.loads(l) for l in open(p) if '"loss"' in l] for p in sys.argv[1:3])
assert len(a) == len(b) and len(a) >= 4, (len(a), len(b))
first = abs(a[0]["loss"] - b[0]["loss"]) / abs(a[0]["loss"])
worst = max(abs(x["loss"] - y["loss"]) / abs(x["loss"]) for x, y in zip(a, b))
print(f"first loss {a[0]['loss']:.6g} vs {b[0]['loss']:.6g} ({first:.2e} relative), worst {worst:.2e}")
assert first <= 1e-3 and worst <= 0.02, (first, worst)
PY
}
q=$FLASH_SOURCE_DIR/configs/quickstart.yaml
d=(--set threads=1 --set train.steps=40 --set train.batch_size=128 --set train.warmup_steps=5 --set train.log_every=5
  --set train.ckpt_every=20)

# distillation with its discriminator (the quickstart's backward recipe)
mpi 1 distill "$q" "${d[@]}" --out "$tmp/d1" 2>"$tmp/log1" || fail "np=1: $(tail -3 "$tmp/log1")"
mpi 2 distill "$q" "${d[@]}" --out "$tmp/d2" 2>"$tmp/log2" || fail "np=2: $(tail -3 "$tmp/log2")"
grep -q "data parallel over 2 ranks (mpi), 64 examples of the global batch of 128" "$tmp/log2" || fail "not sharded: $(cat "$tmp/log2")"
compare "$tmp/d1/metrics.jsonl" "$tmp/d2/metrics.jsonl" || fail "np=2 distillation differs from np=1"
[[ $(grep -c "the student is in" "$tmp/log2") == 1 ]] || fail "more than rank 0 reported"
mpi 2 distill "$q" "${d[@]}" --out "$tmp/d2b" 2>/dev/null || fail "np=2 again"
cmp -s "$tmp/d2/checkpoint.safetensors" "$tmp/d2b/checkpoint.safetensors" || fail "np=2 is not bit-reproducible"
cmp -s "$tmp/d2/loss1.safetensors" "$tmp/d2b/loss1.safetensors" || fail "the discriminator is not bit-reproducible"

# per-sample timesteps: the sorted global draws give each rank its rows of
# the same batch, so np=2 still matches np=1
ps=(--set strategy.timestep_draw=sample --set "losses=[{plugin: reconstruction, weight: 1.0}]")
mpi 1 distill "$q" "${d[@]}" "${ps[@]}" --out "$tmp/p1" 2>"$tmp/logp" || fail "per-sample np=1: $(tail -3 "$tmp/logp")"
mpi 2 distill "$q" "${d[@]}" "${ps[@]}" --out "$tmp/p2" 2>"$tmp/logp" || fail "per-sample np=2: $(tail -3 "$tmp/logp")"
compare "$tmp/p1/metrics.jsonl" "$tmp/p2/metrics.jsonl" || fail "per-sample timesteps: np=2 differs from np=1"

# resumed on another rank count: np=2 to step 20, then np=1
mpi 2 distill "$q" "${d[@]}" --out "$tmp/dr" --until 20 2>/dev/null || fail "np=2 --until 20"
mpi 1 distill "$q" "${d[@]}" --out "$tmp/dr" --resume 2>"$tmp/logr" || fail "np=1 --resume: $(tail -3 "$tmp/logr")"
compare "$tmp/d1/metrics.jsonl" "$tmp/dr/metrics.jsonl" || fail "the resumed run drifted"
grep -q "the checkpoint was written by 2 ranks, the run resumes on 1" "$tmp/logr" ||
  fail "a resume on another rank count says nothing: $(cat "$tmp/logr")"

# on a device (the stand-in, whose memory the host cannot touch): the
# gradients are device memory, summed through the host (the stand-in is
# no GPU, so NCCL is kept out of it even where it is built: none), and
# the curve is np=1's on the CPU
if [[ -n ${FLASH_FAKE_DEVICE:-} ]]; then
  FLASH_CUDA_LIB=$FLASH_FAKE_DEVICE FLASH_COMM_DEVICE=none mpi 2 distill "$q" "${d[@]}" --device cuda \
    --out "$tmp/dd" 2>"$tmp/logd" || fail "np=2 on the device: $(tail -3 "$tmp/logd")"
  grep -q "gradients summed over 2 ranks by host" "$tmp/logd" || fail "device sum: $(cat "$tmp/logd")"
  compare "$tmp/d1/metrics.jsonl" "$tmp/dd/metrics.jsonl" || fail "np=2 on the device differs from np=1"
  # NCCL asked for and not there: every rank stops, none waits
  rc=0
  FLASH_CUDA_LIB=$FLASH_FAKE_DEVICE FLASH_COMM_DEVICE=nccl FLASH_COMM_DEVICE_LIB=$tmp/no_such_nccl.so \
    mpi 2 distill "$q" "${d[@]}" --device cuda --out "$tmp/dn" 2>"$tmp/err" || rc=$?
  ((rc != 0 && rc != 124)) && grep -q "FLASH_COMM_DEVICE=nccl: 2 of 2 ranks lack it" "$tmp/err" ||
    fail "NCCL asked for where there is none: exit $rc: $(cat "$tmp/err")"
fi

# training a model on data (denoise) on the 2-D mixture
t=(--set threads=1 --set train.steps=40 --set train.batch_size=64 --set train.warmup_steps=5 --set train.log_every=5
  --set train.eval_every=0)
cat >"$tmp/train.yaml" <<YAML
seed: 2
dataset: {plugin: toy2d, kind: two_moons, n_train: 2000, n_test: 100}
schedule: {plugin: discrete}
model: {plugin: mlp, dim: 2, hidden: 64, layers: 2, num_classes: 0}
strategy: {plugin: denoise}
train: {steps: 40, lr: 1.0e-3}
YAML
mpi 1 train "$tmp/train.yaml" "${t[@]}" --out "$tmp/t1" 2>"$tmp/log1" || fail "train np=1: $(tail -3 "$tmp/log1")"
mpi 2 train "$tmp/train.yaml" "${t[@]}" --out "$tmp/t2" 2>"$tmp/log2" || fail "train np=2: $(tail -3 "$tmp/log2")"
compare "$tmp/t1/metrics.jsonl" "$tmp/t2/metrics.jsonl" || fail "np=2 training differs from np=1"

# a global batch that does not split
rc=0
mpi 2 train "$tmp/train.yaml" "${t[@]}" --set train.batch_size=63 --out "$tmp/t3" 2>"$tmp/err" || rc=$?
((rc != 0)) && grep -q "does not split evenly over 2 ranks" "$tmp/err" || fail "batch 63 on 2 ranks: exit $rc: $(cat "$tmp/err")"

# flash run: the noise bank's batches shared out and gathered give the
# samples of one process, byte for byte (the teacher's; students differ by
# their training's rounding); rank 0 alone writes
r=(--set threads=1 --set run.samples=3000 --set run.batch=700 --set run.plots=false
  --set 'run.variants=[{name: t25, model: teacher}, {name: t3, model: teacher, set: ["sampler.steps=3"]}]')
mpi 1 run "$q" "${r[@]}" --out "$tmp/r1" >/dev/null 2>"$tmp/log1" || fail "run np=1: $(tail -3 "$tmp/log1")"
mpi 2 run "$q" "${r[@]}" --out "$tmp/r2" >/dev/null 2>"$tmp/log2" || fail "run np=2: $(tail -3 "$tmp/log2")"
for v in t25 t3; do
  cmp -s "$tmp/r1/samples/$v.npy" "$tmp/r2/samples/$v.npy" || fail "np=2 samples of $v differ from np=1"
done
[[ $(grep -c "wrote .*results.json" "$tmp/log2") == 1 ]] || fail "more than rank 0 reported: $(cat "$tmp/log2")"

# flash sample: the same file from 1 or 2 ranks, also for a sampler that
# draws fresh noise at every step
g=$FLASH_SOURCE_DIR/configs/gmm2d/ddim.yaml
for np in 1 2; do
  mpi $np sample "$g" --set 'sampler={plugin: lcm, steps: 4}' --set threads=1 --n 3000 --batch 700 \
    --out "$tmp/s$np.npy" 2>"$tmp/err" || fail "sample np=$np: $(cat "$tmp/err")"
done
cmp -s "$tmp/s1.npy" "$tmp/s2.npy" || fail "np=2 samples differ from np=1"

# flash eval: the evaluator's batches (of the samples and of the
# reference split) shared out and gathered give one process's metrics,
# digit for digit; rank 0 alone writes
if [[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]]; then
  fm=(--set dataset.limit_train=2000 --set dataset.limit_test=600 --set threads=1)
  "$FLASH" train "$FLASH_SOURCE_DIR/configs/eval/fmnist_classifier.yaml" --set train.steps=3 --set train.batch_size=8 \
    --set train.warmup_steps=0 --set train.eval_every=0 "${fm[@]}" --out "$tmp/cls" >/dev/null 2>"$tmp/err" ||
    fail "classifier: $(tail -3 "$tmp/err")"
  fm+=(--set "evaluator_checkpoint=$tmp/cls/checkpoint.safetensors")
  for k in 0 1 2; do fm+=(--set "metrics[$k].n=700" --set "metrics[$k].batch_size=100"); done
  for np in 1 2; do
    mpi $np eval "$FLASH_SOURCE_DIR/configs/eval/fmnist_metrics.yaml" "${fm[@]}" --real 700 --out "$tmp/e$np.json" \
      >/dev/null 2>"$tmp/err" || fail "eval np=$np: $(tail -3 "$tmp/err")"
  done
  cmp -s <(grep -v seconds "$tmp/e1.json") <(grep -v seconds "$tmp/e2.json") ||
    fail "np=2 metrics differ from np=1: $(cat "$tmp/e1.json" "$tmp/e2.json")"
  grep -q '"fd": [0-9]' "$tmp/e2.json" || fail "no fd: $(cat "$tmp/e2.json")"
fi

# one rank fails: every rank stops, the rank is named, nothing hangs
rc=0
FLASH_TEST_FAIL=1:7 mpi 2 distill "$q" "${d[@]}" --out "$tmp/df" 2>"$tmp/err" || rc=$?
((rc != 0 && rc != 124)) || fail "an injected failure: exit $rc"
grep -q "rank 1 of 2: flash distill: step 7: failure injected" "$tmp/err" || fail "$(cat "$tmp/err")"
echo "ok: data parallel on 2 ranks matches 1, reproducible, resumable on another count, fails as one"
