#!/usr/bin/env bash
# The GPU check, in one script for a machine with an NVIDIA GPU (sm_90:
# H100/H200), PyTorch and the CUDA toolkit: builds flash with the CUDA
# backend, runs the CUDA parity tests (tests/unit/test_cuda_parity.c), and
# benchmarks the unet-s training step (batch 64 and 256) and the sampling
# network evaluation (NFE, batch 1 and the training batch) on the GPU with
# `flash bench --device cuda` against PyTorch on the same GPU
# (tools/bench/unet_torch.py --device cuda), in float32 (TF32 off on both
# sides) and with TF32 allowed on both sides. Prints every command and its
# output, then a table of times and ratios (PyTorch time / flash time: > 1
# means flash is faster).
#
#   bash tools/bench/gpu.sh [--prebuilt FILE.tar.xz] [--batches "64 256"] [--modes "fp32 tf32"]
#
# Build: with --prebuilt (or when .devpkg/flash-gpu.tar.xz exists) the
# binaries made by tools/bench/gpu_pack.sh on a build machine are used, with
# the CPU libraries they need bundled (for GPU machines without libyaml,
# Check, oneDNN and the other build dependencies); otherwise it configures
# and builds here with -DFLASH_CUDA=ON. cuDNN and cuBLAS are looked for in
# the toolkit and in PyTorch's nvidia-* packages.
#
# Logs and JSON lines go to $OUT (default /tmp/flash-gpu); exit status is
# nonzero when the build or the parity tests fail.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
OUT=${OUT:-/tmp/flash-gpu}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu.log") 2>&1
PYTHON=${PYTHON:-python3}
prebuilt=""
batches="64 256"
modes="fp32 tf32"
[ -f "$root/.devpkg/flash-gpu.tar.xz" ] && prebuilt="$root/.devpkg/flash-gpu.tar.xz"
while [ $# -gt 0 ]; do
  case "$1" in
    --prebuilt) prebuilt=$2; shift 2 ;;
    --batches) batches=$2; shift 2 ;;
    --modes) modes=$2; shift 2 ;;
    -h|--help) sed -n 2,22p "$0"; exit 0 ;;
    *) echo "gpu.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
set -x
date -u
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || true
command -v nvcc && nvcc --version | tail -2

# ---- libraries: cuDNN and cuBLAS from the toolkit or PyTorch's wheels ----
libdirs=""
for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/lib/x86_64-linux-gnu; do
  [ -d "$d" ] && libdirs="$libdirs:$d"
done
pysite=$("$PYTHON" -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null || true)
for s in $pysite; do
  for sub in cudnn cublas cuda_runtime; do
    [ -d "$s/nvidia/$sub/lib" ] && libdirs="$libdirs:$s/nvidia/$sub/lib"
  done
  # newer wheels put every CUDA 13 library under nvidia/cu13/lib
  [ -d "$s/nvidia/cu13/lib" ] && libdirs="$libdirs:$s/nvidia/cu13/lib"
done

# ---- build -----------------------------------------------------------------
if [ -n "$prebuilt" ]; then
  pkg=/tmp/flash-gpu-pkg
  rm -rf "$pkg" && mkdir -p "$pkg"
  tar -xJf "$prebuilt" -C "$pkg" || exit 1
  BUILD=$pkg/build
  libdirs=":$BUILD/lib:$pkg/deps$libdirs"
else
  BUILD=$root/build-gpu
  timeout 600 cmake -S "$root" -B "$BUILD" -DFLASH_CUDA=ON -DFLASH_NATIVE=OFF -DCMAKE_BUILD_TYPE=Release || exit 1
  timeout 600 cmake --build "$BUILD" -j"$(nproc)" || exit 1
fi
export LD_LIBRARY_PATH="${libdirs#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
ls -la "$BUILD/lib" "$BUILD/bin"
ldd "$BUILD/lib/libflash_cuda.so" | grep -E "cudnn|cublas|not found"
ldd "$BUILD/bin/flash" | grep "not found"

# ---- parity ------------------------------------------------------------------
# NVIDIA_TF32_OVERRIDE=0: no TF32 anywhere in cuBLAS or cuDNN, whatever
# the algorithm heuristics pick (float32 parity)
NVIDIA_TF32_OVERRIDE=0 timeout 150 "$BUILD/bin/test_cuda_parity" | tee "$OUT/parity.txt"
parity_rc=${PIPESTATUS[0]}
echo "parity exit status: $parity_rc"

# ---- benchmarks ----------------------------------------------------------------
FLASH=$BUILD/bin/flash
rm -f "$OUT/bench.jsonl"
for b in $batches; do
  for mode in $modes; do
    if [ $mode = tf32 ]; then tf=1; torch_tf=--tf32; ovr=1; else tf=0; torch_tf=; ovr=0; fi
    export NVIDIA_TF32_OVERRIDE=$ovr
    FLASH_CUDA_TF32=$tf timeout 90 "$FLASH" bench --device cuda --batch "$b" --repeats 10 --warmup 3 \
      | sed "s/^{/{\"mode\": \"$mode\", /" | tee -a "$OUT/bench.jsonl"
    timeout 90 "$PYTHON" "$here/unet_torch.py" --device cuda --batch "$b" --repeats 10 --warmup 3 $torch_tf \
      | sed "s/^{/{\"mode\": \"$mode\", /" | tee -a "$OUT/bench.jsonl"
  done
done
unset NVIDIA_TF32_OVERRIDE
set +x
"$PYTHON" - "$OUT/bench.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
by = {}
for r in rows:
    by[(r["mode"], r["batch"], r["impl"])] = r
print()
print("unet-s on the GPU: seconds, and ratios PyTorch / flash (> 1: flash faster)")
print(f"{'mode':5} {'batch':>5} {'what':12} {'flash':>10} {'pytorch':>10} {'ratio':>7}")
for (mode, batch, impl), f in sorted(by.items()):
    if impl != "flash":
        continue
    t = by.get((mode, batch, "pytorch"))
    for key, name in (("train_step_s", "train step"), ("nfe_b1_s", "NFE b1"), ("nfe_b64_s", f"NFE b{batch}")):
        ft = f.get(key)
        pt = t.get(key) if t else None
        ratio = f"{pt / ft:7.2f}" if ft and pt else "      -"
        print(f"{mode:5} {batch:>5} {name:12} {ft if ft is not None else float('nan'):10.6f} "
              f"{pt if pt is not None else float('nan'):10.6f} {ratio}")
PY
echo "gpu.sh done: parity exit status $parity_rc"
exit "$parity_rc"
