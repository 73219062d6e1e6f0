#!/usr/bin/env bash
# More judges for a finished sweep, after the fact: every finished run's
# samples (runs/<id>/samples/<variant>.npy and its .labels.npy) scored by
# `flash eval JUDGES` (default configs/eval/fmnist_judges.yaml: FD, KID and
# per-class diversity in the first evaluator's features, FD and KID in a
# second evaluator's, fd_b and kid_b) into runs/<id>/judges/<variant>.json.
# `flash report` then adds those metrics to the rows (a metric the run
# measured itself keeps the run's value) and lists any ordering that holds
# in one feature space only. A variant scored before is not scored again.
#
#   tools/repro/judges.sh SWEEP_DIR [--config JUDGES] [-- FLASH_EVAL_ARGS...]
#
# e.g. tools/repro/judges.sh runs/table1 && flash report runs/table1
# (tools/repro/sweep_keep.sh keeps the judges' files with the runs).
set -euo pipefail
FLASH=${FLASH:-$(dirname "$0")/../../build/bin/flash}
config=$(dirname "$0")/../../configs/eval/fmnist_judges.yaml
usage() { sed -n 11,14p "$0" >&2; exit 2; }
(($# >= 1)) || usage
dir=$1
shift
extra=()
while (($#)); do
  case $1 in
    --config) (($# >= 2)) || usage; config=$2; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) usage ;;
  esac
done
[[ -d $dir/runs ]] || { echo "judges: $dir/runs: no such folder (not a sweep)" >&2; exit 2; }
n=0 skipped=0
for done in "$dir"/runs/*/DONE; do
  [[ -e $done ]] || continue
  run=${done%/DONE}
  for x in "$run"/samples/*.npy; do
    [[ -e $x && $x != *.labels.npy ]] || continue
    variant=$(basename "$x" .npy)
    out=$run/judges/$variant.json
    if [[ -e $out ]]; then skipped=$((skipped + 1)); continue; fi
    labels=()
    [[ -e ${x%.npy}.labels.npy ]] && labels=(--labels "${x%.npy}.labels.npy")
    mkdir -p "$run/judges"
    # flash eval writes its output whole or not at all: an interrupted
    # judge leaves nothing, and is scored again next time
    "$FLASH" eval "$config" --samples "$x" "${labels[@]}" "${extra[@]}" --out "$out" >/dev/null ||
      { echo "judges: $x: flash eval failed" >&2; exit 1; }
    n=$((n + 1))
  done
done
echo "judges: $n variants scored, $skipped scored before, in $dir/runs/*/judges/" >&2
