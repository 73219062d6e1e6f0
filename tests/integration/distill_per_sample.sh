#!/usr/bin/env bash
# Per-sample timestep draws (strategy key timestep_draw: sample): a batch
# mixes the student's steps, backward rolls each group out on its slice,
# the run resumes bit for bit, two ranks' worth of draws give the same
# rows as one, and a fixed step with per-sample draws is refused (exit 2).
# Env (set by CTest): FLASH, FLASH_SOURCE_DIR.
: "${FLASH:?}" "${FLASH_SOURCE_DIR:?}"
source "$(dirname "$0")/common.bash"
export OMP_WAIT_POLICY=passive
q=$FLASH_SOURCE_DIR/configs/quickstart.yaml
d=(--set threads=1 --set train.steps=30 --set train.warmup_steps=5 --set train.log_every=1 --set train.ckpt_every=15
   --set "losses=[{plugin: reconstruction, weight: 1.0}, {plugin: srl, weight: 0.5}]")
for s in backward forward; do
  "$FLASH" distill "$q" "${d[@]}" --set strategy.plugin=$s --set strategy.timestep_draw=sample \
    --out "$tmp/$s" >/dev/null 2>"$tmp/err" || fail "$s: $(tail -3 "$tmp/err")"
done
python3 - "$tmp/backward" "$tmp/forward" <<'PY' || fail "per-sample draws"
import json, sys
def col(run, key):
    return [json.loads(l)[key] for l in open(run + "/metrics.jsonl") if '"%s"' % key in l]
bw, fw = sys.argv[1:3]
tb, tf = col(bw, "t"), col(fw, "t")
assert len(tb) == 30 and tb == tf, (tb, tf)
# a batch mean of 256 draws from {999, 750, 500} is never one of them
assert all(500 < t < 999 and t not in (750.0,) for t in tb), tb
assert abs(sum(tb) / len(tb) - 749.7) < 15, sum(tb) / len(tb)
PY
"$FLASH" distill "$q" "${d[@]}" --set strategy.timestep_draw=sample --out "$tmp/split" --until 15 >/dev/null 2>&1 \
  && "$FLASH" distill "$q" "${d[@]}" --set strategy.timestep_draw=sample --out "$tmp/split" --resume >/dev/null 2>"$tmp/err" \
  || fail "resume: $(tail -3 "$tmp/err")"
cmp -s "$tmp/backward/checkpoint.safetensors" "$tmp/split/checkpoint.safetensors" || fail "a resume changed the run"
set +e
"$FLASH" distill "$q" "${d[@]}" --set strategy.timestep_draw=sample --set strategy.step=1 --out "$tmp/bad" \
  >/dev/null 2>"$tmp/err"
rc=$?
set -e
[[ $rc == 2 ]] || fail "step 1 with per-sample draws: exit $rc"
grep -q 'timestep_draw' "$tmp/err" || fail "the error does not name the key: $(cat "$tmp/err")"
[[ ! -e $tmp/bad ]] || fail "a refused run left $tmp/bad behind"
echo "ok: per-sample timesteps mix the steps, resume bit for bit, and a fixed step with them is refused"
