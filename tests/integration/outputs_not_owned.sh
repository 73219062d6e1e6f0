#!/usr/bin/env bash
# Outputs never destroy what flash does not own: a symlink, a FIFO or a
# device at an output path, or a symlink as a run folder, is refused with
# exit 2 and left as it was; --force writes through it (the symlink stays a
# symlink, its target gets the data); a regular file is replaced atomically
# (no temporary file left beside it).
# Env (set by CTest): FLASH, FLASH_SOURCE_DIR.
set -euo pipefail
: "${FLASH:?}" "${FLASH_SOURCE_DIR:?}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
cfg=$FLASH_SOURCE_DIR/configs/gmm2d/ddim.yaml
cd "$tmp"
echo keep >target
ln -s target link
ln -s /dev/full full
mkfifo fifo
mkdir real_dir
ln -s real_dir dir_link

expect2() { # what, then the command
  local what=$1 rc=0
  shift
  "$@" >/dev/null 2>err || rc=$?
  ((rc == 2)) || fail "$what: exit $rc, expected 2 ($(cat err))"
  grep -q "does not own\|not an output file\|not a folder" err || fail "$what: $(cat err)"
}
for out in link full fifo /dev/null /dev/full; do
  expect2 "sample --out $out" "$FLASH" sample "$cfg" --n 8 --out "$out"
done
expect2 "sample --out a directory" "$FLASH" sample "$cfg" --n 8 --out real_dir
expect2 "sample --grid link" "$FLASH" sample "$cfg" --n 8 --out s.npy --grid link
expect2 "run --out a symlinked folder" "$FLASH" run "$FLASH_SOURCE_DIR/configs/quickstart.yaml" --out dir_link \
  --set run.samples=100 --set 'run.variants=[{name: t, model: teacher}]'
[[ -L link && $(cat target) == keep ]] || fail "the symlink or its target changed"
[[ -L full && -p fifo && -L dir_link ]] || fail "a special file was replaced"
[[ -z $(ls real_dir) ]] || fail "something was written into the symlinked folder"

# a refused output leaves no config beside it either
[[ ! -e link.config.yaml && ! -e fifo.config.yaml ]] || fail "a refused output wrote its config.yaml"
# a FIFO where a run keeps its metrics stays a FIFO
mkdir -p run_fifo && mkfifo run_fifo/metrics.jsonl
expect2 "a FIFO at RUNDIR/metrics.jsonl" timeout 20 "$FLASH" distill "$FLASH_SOURCE_DIR/configs/quickstart.yaml" \
  --set train.steps=2 --set train.warmup_steps=0 --out run_fifo
[[ -p run_fifo/metrics.jsonl ]] || fail "the metrics FIFO was replaced"
# inputs that are not files (a FIFO, a device) are refused at once, without blocking
mkfifo in_fifo.yaml in_fifo.npy
for in in "check in_fifo.yaml" "check /dev/zero" "sample $cfg --noise in_fifo.npy --out n.npy"; do
  rc=0
  # shellcheck disable=SC2086
  timeout 10 "$FLASH" $in >/dev/null 2>err || rc=$?
  ((rc == 2)) || fail "$in: exit $rc: $(cat err)"
  grep -q "not a file flash reads" err || fail "$in: $(cat err)"
done

# --force writes through: the symlink stays, the target holds an NPY
"$FLASH" sample "$cfg" --n 8 --out link --force >/dev/null 2>err || fail "--force: $(cat err)"
[[ -L link ]] || fail "--force replaced the symlink"
head -c 6 target | grep -q "NUMPY" || fail "--force did not write through to the target"
# a regular file is replaced, and nothing temporary is left
"$FLASH" sample "$cfg" --n 8 --out plain.npy >/dev/null 2>&1 || fail "first write"
"$FLASH" sample "$cfg" --n 8 --out plain.npy >/dev/null 2>&1 || fail "second write"
[[ -z $(ls | grep '\.tmp\.') ]] || fail "temporary files left: $(ls)"
echo "ok: outputs flash does not own are refused or written through, never replaced"
