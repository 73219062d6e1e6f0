#!/usr/bin/env bash
# A sweep longer than one sitting, carried over in small files. A finished
# run of `flash sweep` is whole in a few files: DONE, run.json, config.yaml,
# results.json, the sample plots, the training curves (metrics.jsonl) and
# the judges scored after it (judges/, tools/repro/judges.sh).
# The checkpoints and the samples (tens of MB a run) are left where they are.
#
#   tools/repro/sweep_keep.sh SWEEP_DIR KEEP_DIR
#       copies those files of every finished run of SWEEP_DIR into
#       KEEP_DIR/runs/<id>/ (a run kept before is replaced: a rerun wins),
#       then `flash report KEEP_DIR` writes the tables of what is kept
#   tools/repro/sweep_keep.sh --restore KEEP_DIR SWEEP_DIR
#       puts the kept runs back into SWEEP_DIR/runs/, where
#       `flash sweep SWEEP.yaml --out SWEEP_DIR --resume` skips them and runs
#       the rest; a run folder already in SWEEP_DIR is left as it is
#
# For example, Table 1 over several sittings (the kept runs are committed
# in results/table1/runs/):
#   tools/repro/sweep_keep.sh --restore results/table1 runs/table1
#   flash sweep configs/sweeps/table1.yaml --out runs/table1 --resume --jobs 2
#   tools/repro/sweep_keep.sh runs/table1 results/table1
set -euo pipefail
FLASH=${FLASH:-$(dirname "$0")/../../build/bin/flash}
usage() { sed -n 8,15p "$0" >&2; exit 2; }

restore=0
[[ ${1:-} == --restore ]] && { restore=1; shift; }
(($# == 2)) || usage
from=$1 to=$2
[[ -d $from/runs ]] || { echo "sweep_keep: $from/runs: no such folder (not a sweep)" >&2; exit 2; }
# a kept run replaces the folder it is kept in: the two folders must be
# apart, or the samples and checkpoints would go with it
mkdir -p "$to"
a=$(cd "$from" && pwd -P) b=$(cd "$to" && pwd -P)
if [[ $a == "$b" || $b == "$a"/* || $a == "$b"/* ]]; then
  echo "sweep_keep: $from and $to are the same folder or one holds the other" >&2
  exit 2
fi

if ((restore)); then
  n=0
  for run in "$from"/runs/*/; do
    id=$(basename "$run")
    [[ -f $run/DONE ]] || continue
    [[ -e $to/runs/$id ]] && continue
    mkdir -p "$to/runs"
    # a part left by an interrupted restore is started again
    rm -rf "$to/runs/.$id.part"
    cp -r "$run" "$to/runs/.$id.part"
    mv "$to/runs/.$id.part" "$to/runs/$id"
    n=$((n + 1))
  done
  echo "sweep_keep: $n finished runs put back into $to/runs" >&2
  exit 0
fi

n=0
for run in "$from"/runs/*/; do
  id=$(basename "$run")
  [[ -f $run/DONE ]] || continue
  part=$to/runs/.$id.part
  rm -rf "$part"
  mkdir -p "$part"
  for f in DONE run.json config.yaml results.json run.log; do
    [[ -f $run/$f ]] && cp "$run/$f" "$part/"
  done
  # the judges scored after the run (tools/repro/judges.sh)
  [[ -d $run/judges ]] && { mkdir -p "$part/judges"; cp "$run"/judges/* "$part/judges/" 2>/dev/null || true; }
  # the plots the report shows and each trained entry's curves
  [[ -d $run/plots ]] && { mkdir -p "$part/plots"; cp "$run"/plots/*.png "$part/plots/" 2>/dev/null || true; }
  for m in "$run"/*/metrics.jsonl; do
    [[ -f $m ]] || continue
    e=$(basename "$(dirname "$m")")
    mkdir -p "$part/$e"
    cp "$m" "$part/$e/"
  done
  rm -rf "$to/runs/$id"
  mv "$part" "$to/runs/$id"
  n=$((n + 1))
done
echo "sweep_keep: $n finished runs kept in $to/runs" >&2
((n > 0)) || exit 0
"$FLASH" report "$to" --out "$to" >/dev/null
