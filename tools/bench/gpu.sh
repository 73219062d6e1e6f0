#!/usr/bin/env bash
# The GPU check, in one script for a machine with one NVIDIA GPU (sm_90:
# H100/H200), PyTorch and the CUDA toolkit, within about 8 minutes:
#   1. build flash with the CUDA backend (or unpack a build made by
#      tools/bench/gpu_pack.sh);
#   2. the CUDA parity tests (tests/unit/test_cuda_parity.c, float32), and
#      the NCCL collective on one rank (tests/tools/comm_device_check.c);
#   3. the quickstart on the GPU: flash run configs/quickstart.yaml
#      --device cuda (every variant, train.steps cut to 500);
#   4. a short real-data teacher: flash train configs/teacher/fmnist_unet_s.yaml
#      --device cuda, 300 steps; the evaluator classifier, 300 steps;
#   5. a short Imagine Flash 3-step distillation of that teacher, sampled
#      and scored beside the teacher's 25-step DPM++: flash run
#      configs/distill/imagine_flash_3step.yaml --device cuda, 300 iterations;
#   6. `flash bench --device cuda` (unet-s: training step, NFE at batch 1 and
#      at the batch) against PyTorch on the same GPU
#      (tools/bench/unet_torch.py), eager and torch.compile, float32 (TF32
#      off on both sides) and TF32 (allowed on both sides), batch 64 and 256;
#   7. one table: each stage's status and time, the parity count, the
#      metrics of 3 and 5, and the benchmark's times and ratios (PyTorch
#      time / flash time: > 1 means flash is faster).
#
#   bash tools/bench/gpu.sh [--prebuilt FILE.tar.xz] [--build DIR] [--data DIR]
#                           [--batches "64 256"] [--modes "fp32 tf32"] [--no-compile]
#
# Build: with --prebuilt (or when .devpkg/flash-gpu.tar.xz exists) the
# package's binaries are used, with the CPU libraries they need bundled
# (for GPU machines without libyaml, Check, oneDNN and the other build
# dependencies) and Fashion-MNIST when the package has it; with --build DIR
# an existing build tree; otherwise it configures and builds here
# (build-gpu/, -DFLASH_CUDA=ON). cuDNN and cuBLAS are looked for in the
# toolkit and in PyTorch's nvidia-* packages. Fashion-MNIST: --data DIR,
# else /usr/share/datasets/fashion-mnist, else the package's copy.
#
# The stages share a budget (GPU_SH_BUDGET_S, default 480 s): each has its
# own time limit too, and a stage the budget no longer allows is skipped
# and counted as failed.
#
# GPU_SH_FAKE=1 runs the whole script without a GPU, on the strict stand-in
# device (tests/fake_device/, loaded through FLASH_CUDA_LIB; a CPU build,
# build-gpu-fake/ unless --build names one) at toy sizes, and PyTorch on the
# CPU when it is installed: a check of the script itself, not of a GPU.
#
# Logs, JSON lines and the summary go to $OUT (default /tmp/flash-gpu):
# gpu.log (everything), <stage>.log, stages.tsv, parity.txt, bench.jsonl,
# summary.txt, and the runs' directories (quickstart/, teacher/, classifier/,
# imagine_flash_3/). Exit status: nonzero when the build, the parity tests
# or any stage failed.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
OUT=${OUT:-/tmp/flash-gpu}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu.log") 2>&1
PYTHON=${PYTHON:-python3}
fake=${GPU_SH_FAKE:-0}
[ "$fake" = 0 ] && fake=""
budget=${GPU_SH_BUDGET_S:-480}
start=$(date +%s)
deadline=$((start + budget))
prebuilt=""
build=""
data=""
batches="64 256"
modes="fp32 tf32"
compile=1
[ -f "$root/.devpkg/flash-gpu.tar.xz" ] && prebuilt="$root/.devpkg/flash-gpu.tar.xz"
while [ $# -gt 0 ]; do
  case "$1" in
    --prebuilt) prebuilt=$2; shift 2 ;;
    --build) build=$2; prebuilt=""; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --batches) batches=$2; shift 2 ;;
    --modes) modes=$2; shift 2 ;;
    --no-compile) compile=""; shift ;;
    -h|--help) sed -n 2,48p "$0"; exit 0 ;;
    *) echo "gpu.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

# ---- sizes: the GPU's, or toy ones for the stand-in ----------------------------
if [ -n "$fake" ]; then
  qs_set=(--set train.steps=4 --set train.batch_size=32 --set train.warmup_steps=1 --set train.log_every=2
    --set train.ckpt_every=4 --set run.samples=200)
  fm_small=(--set dataset.limit_train=64 --set dataset.limit_test=8 --set train.batch_size=4)
  teacher_steps=2 classifier_steps=2 distill_steps=2
  run_set=(--set run.samples=8 --set run.batch=4 --set "run.variants=[{name: teacher_dpmpp_25, model: teacher,
    set: [\"sampler={plugin: dpmpp_2m, steps: 3, timestep_spacing: trailing, guidance_scale: 2.0}\"]},
    {name: imagine_flash_3}]")
  bench_args=(--repeats 2 --warmup 1)
  torch_args=(--device cpu --repeats 2 --warmup 1)
  batches=${GPU_SH_FAKE_BATCHES:-4}
else
  qs_set=(--set train.steps=500)
  fm_small=()
  teacher_steps=300 classifier_steps=300 distill_steps=300
  run_set=(--set run.samples=2000 --set "run.variants=[{name: teacher_dpmpp_25, model: teacher,
    set: [\"sampler={plugin: dpmpp_2m, steps: 25, timestep_spacing: trailing, guidance_scale: 2.0}\"]},
    {name: imagine_flash_3}]")
  bench_args=(--repeats 10 --warmup 3)
  torch_args=(--device cuda --repeats 10 --warmup 3)
fi

failed=()
# stage NAME LIMIT_S CMD...: runs CMD within LIMIT_S and what is left of the
# budget, its output in $OUT/NAME.log and here; records status and seconds
# in stages.tsv.
stage() {
  local name=$1 limit=$2
  shift 2
  local left=$((deadline - $(date +%s)))
  if ((left < 15)); then
    echo "== $name: skipped, the ${budget} s budget is spent"
    printf '%s\tskipped\t0\n' "$name" >>"$OUT/stages.tsv"
    failed+=("$name")
    return 1
  fi
  ((limit > left)) && limit=$left
  echo "== $name (at most ${limit} s): $*"
  local t0 t1 rc
  t0=$(date +%s.%N)
  timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
  rc=${PIPESTATUS[0]}
  t1=$(date +%s.%N)
  printf '%s\t%s\t%.1f\n' "$name" "$rc" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" >>"$OUT/stages.tsv"
  ((rc == 0)) || failed+=("$name")
  return "$rc"
}
rm -f "$OUT/stages.tsv" "$OUT/bench.jsonl"

date -u
if [ -n "$fake" ]; then
  echo "GPU_SH_FAKE: no GPU; the strict stand-in device plays 'cuda'"
else
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || true
  command -v nvcc && nvcc --version | tail -2
fi

# ---- libraries: cuDNN and cuBLAS from the toolkit or PyTorch's wheels ----------
libdirs=""
for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/lib/x86_64-linux-gnu; do
  [ -d "$d" ] && libdirs="$libdirs:$d"
done
pysite=$("$PYTHON" -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null || true)
for s in $pysite; do
  for sub in cudnn cublas cuda_runtime nccl; do
    [ -d "$s/nvidia/$sub/lib" ] && libdirs="$libdirs:$s/nvidia/$sub/lib"
  done
  # newer wheels put every CUDA 13 library under nvidia/cu13/lib
  [ -d "$s/nvidia/cu13/lib" ] && libdirs="$libdirs:$s/nvidia/cu13/lib"
done

# ---- build ---------------------------------------------------------------------
pkg=""
if [ -n "$build" ]; then
  BUILD=$(cd "$build" && pwd) || exit 1
elif [ -n "$prebuilt" ] && [ -z "$fake" ]; then
  pkg=/tmp/flash-gpu-pkg
  rm -rf "$pkg" && mkdir -p "$pkg"
  stage unpack 120 tar -xJf "$prebuilt" -C "$pkg" || exit 1
  BUILD=$pkg/build
  libdirs=":$BUILD/lib:$pkg/deps$libdirs"
else
  if [ -n "$fake" ]; then
    BUILD=$root/build-gpu-fake
    cuda_opt=-DFLASH_CUDA=OFF
  else
    BUILD=$root/build-gpu
    cuda_opt=-DFLASH_CUDA=ON
  fi
  stage configure 120 cmake -S "$root" -B "$BUILD" "$cuda_opt" -DFLASH_NATIVE=OFF -DCMAKE_BUILD_TYPE=Release ||
    exit 1
  stage build 300 cmake --build "$BUILD" -j"$(nproc)" || exit 1
fi
export LD_LIBRARY_PATH="${libdirs#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
FLASH=$BUILD/bin/flash
[ -x "$FLASH" ] || { echo "gpu.sh: no $FLASH"; exit 1; }
if [ -n "$fake" ]; then
  export FLASH_CUDA_LIB=$BUILD/tests/tools/libflash_fake_device.so
  [ -f "$FLASH_CUDA_LIB" ] || { echo "gpu.sh: no stand-in device at $FLASH_CUDA_LIB"; exit 1; }
else
  ldd "$BUILD/lib/libflash_cuda.so" | grep -E "cudnn|cublas|not found"
fi
ldd "$FLASH" | grep "not found"

if [ -z "$data" ]; then
  data=/usr/share/datasets/fashion-mnist
  [ ! -f "$data/train-images-idx3-ubyte.gz" ] && [ -n "$pkg" ] && [ -d "$pkg/data/fashion-mnist" ] &&
    data=$pkg/data/fashion-mnist
fi
have_data=""
[ -f "$data/train-images-idx3-ubyte.gz" ] && have_data=1 || echo "gpu.sh: no Fashion-MNIST at $data (--data DIR)"

# ---- 2. parity -------------------------------------------------------------------
# NVIDIA_TF32_OVERRIDE=0: no TF32 anywhere in cuBLAS or cuDNN, whatever the
# algorithm heuristics pick (float32 parity)
stage parity 150 env NVIDIA_TF32_OVERRIDE=0 FLASH_SOURCE_DIR="$root" "$BUILD/bin/test_cuda_parity"
cp "$OUT/parity.log" "$OUT/parity.txt"

# ---- 3. the quickstart on the device -------------------------------------------------
cd "$root" || exit 1
# the NCCL collective on this GPU: one rank (NCCL refuses two ranks on
# one GPU), loaded, joined and summing device memory in place
if [ -z "$fake" ] && [ -f "$BUILD/lib/libflash_comm_nccl.so" ]; then
  stage nccl 60 "$BUILD/tests/tools/comm_device_check" "$BUILD/lib/libflash_comm_nccl.so" cuda
fi
stage quickstart 120 "$FLASH" run configs/quickstart.yaml --device cuda "${qs_set[@]}" --out "$OUT/quickstart"

# ---- 4, 5. Fashion-MNIST: a short teacher, the evaluator, Imagine Flash 3-step -------
if [ -n "$have_data" ]; then
  fm=(--set "dataset.path=$data" "${fm_small[@]}")
  stage teacher 120 "$FLASH" train configs/teacher/fmnist_unet_s.yaml --device cuda "${fm[@]}" \
    --set train.steps=$teacher_steps --set train.warmup_steps=$((teacher_steps / 6)) \
    --set train.ckpt_every=$teacher_steps --set train.log_every=$(((teacher_steps + 5) / 6)) --out "$OUT/teacher"
  stage classifier 90 "$FLASH" train configs/eval/fmnist_classifier.yaml --device cuda "${fm[@]}" \
    --set train.steps=$classifier_steps --set train.warmup_steps=$((classifier_steps / 6)) \
    --set train.ckpt_every=$classifier_steps --set train.eval_every=$classifier_steps \
    --set train.log_every=$(((classifier_steps + 5) / 6)) --out "$OUT/classifier"
  stage imagine_flash 150 "$FLASH" run configs/distill/imagine_flash_3step.yaml --device cuda "${fm[@]}" \
    --set "teacher_checkpoint=$OUT/teacher/checkpoint.safetensors" \
    --set "evaluator_checkpoint=$OUT/classifier/checkpoint.safetensors" \
    --set train.steps=$distill_steps --set train.warmup_steps=$((distill_steps / 6)) \
    --set train.ckpt_every=$distill_steps --set train.log_every=$(((distill_steps + 5) / 6)) \
    "${run_set[@]}" --out "$OUT/imagine_flash_3"
else
  for s in teacher classifier imagine_flash; do
    printf '%s\tno data\t0\n' "$s" >>"$OUT/stages.tsv"
    failed+=("$s")
  done
fi

# ---- 6. benchmarks -----------------------------------------------------------------------
for b in $batches; do
  for mode in $modes; do
    if [ "$mode" = tf32 ]; then tf=1; else tf=0; fi
    stage "bench_flash_${mode}_$b" 60 env NVIDIA_TF32_OVERRIDE=$tf FLASH_CUDA_TF32=$tf \
      "$FLASH" bench --device cuda --batch "$b" "${bench_args[@]}"
    grep '^{' "$OUT/bench_flash_${mode}_$b.log" | sed "s/^{/{\"mode\": \"$mode\", /" >>"$OUT/bench.jsonl"
  done
done
if "$PYTHON" -c "import torch" 2>/dev/null; then
  # one process per kind for every batch and mode: torch.compile compiles
  # each graph once, and imports torch once
  torch_batches=$(echo $batches | tr ' ' ,)
  torch_modes=$(echo $modes | tr ' ' ,)
  stage bench_torch 120 "$PYTHON" "$here/unet_torch.py" "${torch_args[@]}" --batch "$torch_batches" \
    --modes "$torch_modes"
  grep '^{' "$OUT/bench_torch.log" >>"$OUT/bench.jsonl"
  if [ -n "$compile" ]; then
    stage bench_torch_compile 240 "$PYTHON" "$here/unet_torch.py" "${torch_args[@]}" --compile \
      --batch "$torch_batches" --modes "$torch_modes"
    grep '^{' "$OUT/bench_torch_compile.log" >>"$OUT/bench.jsonl"
  fi
else
  echo "gpu.sh: $PYTHON has no torch: no PyTorch columns"
  [ -z "$fake" ] && failed+=(bench_torch)
fi

# ---- 7. the table ------------------------------------------------------------------------
"$PYTHON" - "$OUT" "${fake:+stand-in}" <<'PY' | tee "$OUT/summary.txt"
import json, os, re, sys
out, fake = sys.argv[1], len(sys.argv) > 2 and sys.argv[2]
print()
print("flash on " + ("the strict stand-in device (GPU_SH_FAKE: no GPU, toy sizes)" if fake else "the GPU"))
print()
print(f"{'stage':28} {'status':>8} {'seconds':>8}")
for line in open(os.path.join(out, "stages.tsv")):
    name, status, sec = line.rstrip("\n").split("\t")
    print(f"{name:28} {('ok' if status == '0' else status):>8} {float(sec):8.1f}")

try:
    parity = open(os.path.join(out, "parity.txt")).read()
    m = re.search(r"(\d+)%: Checks: (\d+), Failures: (\d+), Errors: (\d+)", parity)
    skip = "SKIP" in parity
    print()
    print("parity:", f"{m.group(2)} checks, {m.group(3)} failures, {m.group(4)} errors" if m else "no result",
          "(SKIPPED: no device)" if skip else "")
except OSError:
    pass

def results(name, title):
    try:
        r = json.load(open(os.path.join(out, name, "results.json")))
    except (OSError, ValueError):
        return
    print()
    print(title)
    keys = []
    for v in r["variants"]:
        for k in v.get("metrics", {}):
            if k not in keys:
                keys.append(k)
    print(f"{'variant':20} {'NFE':>4} " + " ".join(f"{k:>18}" for k in keys) + f" {'sample_s':>9} {'distill_s':>9}")
    for v in r["variants"]:
        m = v.get("metrics", {})
        cells = " ".join(f"{m[k]:18.5g}" if isinstance(m.get(k), (int, float)) else f"{'-':>18}" for k in keys)
        ds = v.get("distill_seconds")
        print(f"{v['name']:20} {v.get('nfe', 0):4} {cells} {v.get('seconds', 0):9.3f} "
              f"{(f'{ds:9.2f}' if isinstance(ds, (int, float)) else '        -')}")

results("quickstart", "quickstart (flash run configs/quickstart.yaml --device cuda)")
for name in ("teacher", "classifier"):
    try:
        last = {}  # each key's latest value (training and test lines alternate)
        for l in open(os.path.join(out, name, "metrics.jsonl")):
            if l.strip():
                last.update(json.loads(l))
        keep = {k: last[k] for k in ("step", "loss_avg", "step_s", "test_loss", "test_acc") if k in last}
        print(f"\n{name}: at the end {json.dumps(keep)}")
    except (OSError, ValueError, IndexError):
        pass
results("imagine_flash_3", "Imagine Flash 3-step on Fashion-MNIST (short teacher and distillation)")

rows = []
try:
    rows = [json.loads(l) for l in open(os.path.join(out, "bench.jsonl")) if l.strip().startswith("{")]
except OSError:
    pass
by = {(r.get("mode", "fp32"), int(r["batch"]), r["impl"]): r for r in rows}
if rows:
    print()
    print("unet-s: seconds, and ratios PyTorch / flash (> 1: flash faster)")
    print(f"{'mode':5} {'batch':>5} {'what':12} {'flash':>10} {'eager':>10} {'ratio':>7} {'compile':>10} {'ratio':>7}")
    for (mode, batch, impl), f in sorted(by.items()):
        if impl != "flash":
            continue
        for key, name in (("train_step_s", "train step"), ("nfe_b1_s", "NFE b1"), ("nfe_b64_s", f"NFE b{batch}")):
            ft = f.get(key)
            cells = []
            for peer in ("pytorch", "pytorch-compile"):
                pt = by.get((mode, batch, peer), {}).get(key)
                cells.append(f"{pt:10.6f}" if pt else f"{'-':>10}")
                cells.append(f"{pt / ft:7.2f}" if pt and ft else f"{'-':>7}")
            print(f"{mode:5} {batch:>5} {name:12} {ft:10.6f} " + " ".join(cells))
    comp = [r for r in rows if r["impl"] == "pytorch-compile"]
    if comp:
        print("torch.compile's first calls (compiling), s:",
              ", ".join(f"{r['mode']} b{r['batch']} {r['first_calls_s']}" for r in comp))
PY
if ((${#failed[@]})); then
  echo "gpu.sh done in $(($(date +%s) - start)) s: FAILED: ${failed[*]}"
  exit 1
fi
echo "gpu.sh done in $(($(date +%s) - start)) s: every stage passed"
