#!/usr/bin/env bash
# A new distillation strategy and a new loss, both built out of tree as
# CONTRIBUTING.md describes: tests/data/plugins/my_strategy.c with the
# installed plugin kit (pkg-config flash-kit) and my_loss.c with flash.pc,
# then `flash distill` of the quickstart's exact teacher with them through
# plugin_paths: the run trains (its loss falls), checkpoints, and resumes.
# Env (set by CTest): FLASH_SOURCE_DIR, FLASH_BINARY_DIR.
: "${FLASH_SOURCE_DIR:?}" "${FLASH_BINARY_DIR:?}"
source "$(dirname "$0")/common.bash"

cmake --install "$FLASH_BINARY_DIR" --prefix "$tmp/prefix" >/dev/null
pcdir=$(dirname "$(find "$tmp/prefix" -name flash-kit.pc | head -n1)")
[[ -f $pcdir/flash-kit.pc ]] || fail "flash-kit.pc not installed"
[[ -f $tmp/prefix/include/flash/kit/distill.h ]] || fail "the kit's headers are not installed"
flash=$tmp/prefix/bin/flash

mkdir -p "$tmp/work/plugins"
cp "$FLASH_SOURCE_DIR/tests/data/plugins/my_strategy.c" "$FLASH_SOURCE_DIR/tests/data/plugins/my_loss.c" "$tmp/work/"
(
  cd "$tmp/work"
  export PKG_CONFIG_PATH=$pcdir
  # shellcheck disable=SC2046
  ${CC:-cc} -std=c11 -shared -fPIC -Wall -Wextra -Werror my_strategy.c $(pkg-config --cflags --libs flash-kit) \
    -o plugins/my_strategy.so
  # shellcheck disable=SC2046
  ${CC:-cc} -std=c11 -shared -fPIC -Wall -Wextra -Werror my_loss.c $(pkg-config --cflags flash) -o plugins/my_loss.so
)

cfg=$tmp/work/pipeline.yaml
{
  echo "extends: $FLASH_SOURCE_DIR/configs/quickstart.yaml"
  echo "plugin_paths: [plugins]"
  echo "sampler: {plugin: ddim, timesteps: [999]}"
  echo "strategy: {plugin: my_strategy, target: {k: 4}}"
  echo "losses: [{plugin: my_loss, weight: 1.0}]"
  echo "train: {steps: 120, batch_size: 128, warmup_steps: 10, ckpt_every: 60, log_every: 20, lr_schedule: constant}"
} >"$cfg"
cd "$tmp"
env -u FLASH_PLUGIN_DIR -u FLASH_PLUGIN_PATH "$flash" plugins --config "$cfg" --kind strategy >"$tmp/list" ||
  fail "flash plugins failed"
grep -q "^strategy  *my_strategy .*plugins/my_strategy\.so" "$tmp/list" || fail "my_strategy not listed: $(cat "$tmp/list")"

env -u FLASH_PLUGIN_DIR -u FLASH_PLUGIN_PATH "$flash" distill "$cfg" --out "$tmp/run" 2>"$tmp/log" ||
  fail "flash distill: $(tail -3 "$tmp/log")"
[[ -f $tmp/run/checkpoint.safetensors ]] || fail "no checkpoint"
python3 - "$tmp/run/metrics.jsonl" <<'PY' || fail "the loss did not fall"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"loss_avg"' in l]
assert len(rows) == 6, rows
assert "loss_my_loss" in rows[0] and rows[0]["teacher_nfe"] == 4, rows[0]
first, last = rows[0]["loss_avg"], rows[-1]["loss_avg"]
assert last < 0.7 * first, (first, last)
PY

# interrupted at step 60 and resumed: the same weights as the straight run
env -u FLASH_PLUGIN_DIR -u FLASH_PLUGIN_PATH "$flash" distill "$cfg" --out "$tmp/cut" --until 60 2>/dev/null ||
  fail "interrupted run"
env -u FLASH_PLUGIN_DIR -u FLASH_PLUGIN_PATH "$flash" distill "$cfg" --out "$tmp/cut" --resume 2>/dev/null ||
  fail "resumed run"
cmp -s "$tmp/run/checkpoint.safetensors" "$tmp/cut/checkpoint.safetensors" || fail "resume is not bit for bit"
echo "ok: an out-of-tree strategy and loss distil, checkpoint and resume bit for bit"
