# Sourced by the integration tests (not a test itself: CTest runs *.sh):
# strict mode, a temporary directory $tmp removed on exit, and the checks
# the scripts share.
set -euo pipefail
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }

# expect RC NAME PATTERN... -- ARGS...: runs flash, checks exit code and stderr
expect() {
  local want=$1 name=$2
  shift 2
  local pats=()
  while [[ $1 != -- ]]; do pats+=("$1"); shift; done
  shift
  local rc=0
  "$FLASH" "$@" >out 2>err || rc=$?
  ((rc == want)) || fail "$name: exit $rc, want $want: $(cat err)"
  for p in "${pats[@]}"; do
    grep -qE -- "$p" err || fail "$name: stderr lacks /$p/: $(cat err)"
  done
}

# labels_npy FILE N: an int64 NPY of N class labels, 0, 0, ..., 1, 1, ...,
# the ten classes in equal runs (N a multiple of 10 gives each N/10), for
# `--labels`; written with Python's standard library alone (NPY 1.0: the
# header padded to a 64-byte line).
labels_npy() {
  python3 - "$1" "$2" <<'PY'
import struct, sys
n = int(sys.argv[2])
labels = [i * 10 // n for i in range(n)]
head = "{'descr': '<i8', 'fortran_order': False, 'shape': (%d,), }" % n
head += " " * (63 - (10 + len(head)) % 64) + "\n"
with open(sys.argv[1], "wb") as f:
    f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(head)) + head.encode())
    f.write(struct.pack("<%dq" % n, *labels))
PY
}

# Ends the test as passed, saying SKIP, where Fashion-MNIST is not installed.
need_fashion_mnist() {
  if [[ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]]; then
    echo "SKIP: Fashion-MNIST is not installed (tools/setup.sh installs it)"
    exit 0
  fi
}

# The Fashion-MNIST tests' tiny settings (16 training images, one thread)
# and a one-step unet-s teacher in $tmp/teacher to distil from: enough to
# run every recipe's code, not to learn anything. Ends the test with SKIP
# where Fashion-MNIST is missing; leaves the shell in the source tree.
small=(--set dataset.limit_train=16 --set dataset.limit_test=4 --set threads=1)
tiny_fmnist_teacher() {
  need_fashion_mnist
  cd "$FLASH_SOURCE_DIR"
  "$FLASH" train configs/teacher/fmnist_unet_s.yaml --set train.steps=1 --set train.batch_size=2 \
    --set train.warmup_steps=0 "${small[@]}" --out "$tmp/teacher" >/dev/null 2>"$tmp/err" ||
    fail "teacher: $(tail -3 "$tmp/err")"
}

# write_mlp_training FILE DATA STEPS: a denoise pipeline for a 2-D MLP on
# the NPY array DATA (relative to FILE's folder as a config names it).
write_mlp_training() {
  cat >"$1" <<YAML
seed: 0
dataset: {plugin: npy, path: $2}
schedule: {plugin: discrete}
model: {plugin: mlp, dim: 2, hidden: 16, layers: 2, time_dim: 8}
strategy: {plugin: denoise}
train: {steps: $3, batch_size: 8}
YAML
}
