#!/usr/bin/env bash
# Packs a CUDA build for tools/bench/gpu.sh on a GPU machine that lacks
# flash's build dependencies: the build tree's bin/ and lib/ (libflash,
# libflash_cuda, plugins, the flash command, test_cuda_parity) plus the
# shared libraries they need that are not part of the C runtime or CUDA
# (oneDNN, OpenBLAS, libyaml, cJSON, libpng, ...) and Fashion-MNIST when
# it is installed (FMNIST_DIR, default /usr/share/datasets/fashion-mnist),
# into .devpkg/flash-gpu.tar.xz.
#
#   bash tools/bench/gpu_pack.sh [BUILD_DIR]   (default build-gpu, configured
#                                              with -DFLASH_CUDA=ON -DFLASH_NATIVE=OFF)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-$root/build-gpu}
[ -f "$build/lib/libflash_cuda.so" ] || { echo "gpu_pack.sh: $build has no libflash_cuda.so" >&2; exit 1; }
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/build" "$stage/deps"
cp -a "$build/bin" "$build/lib" "$stage/build/"
# the build tree's tests live under bin/ already; keep only what gpu.sh runs
find "$stage/build/bin" -type f ! -name flash ! -name test_cuda_parity -delete
# and the NCCL check (libnccl itself, 200 MB, comes with the GPU machine's
# toolkit or PyTorch's nvidia-nccl package, as cuDNN does)
if [ -f "$build/tests/tools/comm_device_check" ]; then
  mkdir -p "$stage/build/tests/tools"
  cp "$build/tests/tools/comm_device_check" "$stage/build/tests/tools/"
fi
# dependencies outside glibc, the compiler runtime and CUDA
for f in "$stage/build/bin/flash" "$stage/build/bin/test_cuda_parity" "$stage/build/lib/"*.so*; do
  ldd "$f" 2>/dev/null | awk '/=> \//{print $3}'
done | sort -u | grep -v -E '/(libc|libm|libdl|libpthread|librt|ld-linux|libstdc\+\+|libgcc_s|libcuda|libcudnn|libcublas|libcublasLt|libcudart|libnccl|libOpenCL)[.-]' \
  | grep -v "$build" | while read -r lib; do cp -L "$lib" "$stage/deps/"; done
ls -la "$stage/deps"
# Fashion-MNIST (30 MB) for gpu.sh's teacher and distillation, on GPU
# machines that cannot download it
parts=(build deps)
fmnist=${FMNIST_DIR:-/usr/share/datasets/fashion-mnist}
if [ -f "$fmnist/train-images-idx3-ubyte.gz" ]; then
  mkdir -p "$stage/data/fashion-mnist"
  cp "$fmnist"/*-ubyte.gz "$stage/data/fashion-mnist/"
  parts+=(data)
fi
mkdir -p "$root/.devpkg"
XZ_OPT=-T0 tar -cJf "$root/.devpkg/flash-gpu.tar.xz" -C "$stage" "${parts[@]}"
ls -la "$root/.devpkg/flash-gpu.tar.xz"
