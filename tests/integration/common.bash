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

# Ends the test as passed, saying SKIP, where Fashion-MNIST is not installed.
need_fashion_mnist() {
  if [[ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]]; then
    echo "SKIP: Fashion-MNIST is not installed (tools/setup.sh installs it)"
    exit 0
  fi
}
