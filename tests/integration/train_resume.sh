#!/usr/bin/env bash
# flash train --resume continues bit for bit: a run killed (SIGKILL) after a
# checkpoint and resumed must produce the same loss curve (metrics.jsonl
# without timings) and the same final checkpoint bytes as an uninterrupted
# run. Also: a fresh run refuses a directory that holds a checkpoint.
set -euo pipefail
FLASH=${FLASH:-build/bin/flash}
DATA=/usr/share/datasets/fashion-mnist
if [ ! -r "$DATA/train-images-idx3-ubyte.gz" ]; then
  echo "train_resume: $DATA not installed; skipped"
  exit 0
fi
# One thread: resume is bit for bit at a fixed thread count, and a small
# test should not spin on a busy CI machine.
export OMP_WAIT_POLICY=passive
tmp=$(mktemp -d /tmp/flash_train_resume.XXXXXX)
trap 'kill -9 $pid 2>/dev/null || true; rm -rf "$tmp"' EXIT
pid=

# A small U-Net (31,513 parameters) on 28x28 Fashion-MNIST with warmup and
# cosine LR, EMA, label dropout and min-SNR weights: every piece of state a
# resume must restore.
cat > "$tmp/tiny.yaml" <<YAML
seed: 7
threads: 1
dataset: {plugin: fashion_mnist, path: $DATA, limit_test: 64}
schedule: {plugin: discrete, num_train_timesteps: 1000, beta_schedule: linear}
model: {plugin: unet, base_channels: 8, groups: 4, mid_blocks: 1}
strategy: {plugin: denoise, label_dropout: 0.2, min_snr_gamma: 5}
train:
  steps: 80
  batch_size: 8
  lr: 1.0e-3
  warmup_steps: 10
  lr_schedule: cosine
  ema_decay: 0.99
  ckpt_every: 10
  log_every: 1
  eval_batches: 2
YAML

"$FLASH" train "$tmp/tiny.yaml" --out "$tmp/a" --quiet

# Interrupted run: kill it once it is past its second checkpoint.
"$FLASH" train "$tmp/tiny.yaml" --out "$tmp/b" --quiet &
pid=$!
for _ in $(seq 1 3000); do
  last=$( (tail -n 1 "$tmp/b/metrics.jsonl" 2>/dev/null || true) | sed -n 's/.*"step": \([0-9]*\).*/\1/p')
  if [ -n "$last" ] && [ "$last" -ge 25 ]; then break; fi
  sleep 0.01
done
if ! kill -9 "$pid" 2>/dev/null; then
  echo "train_resume: the run finished before it could be interrupted"
  exit 1
fi
wait "$pid" 2>/dev/null || true
pid=
[ "$last" -lt 80 ] || { echo "train_resume: interrupted too late (step $last)"; exit 1; }
echo "train_resume: killed at step $last"

# A fresh start must not overwrite the interrupted run.
if "$FLASH" train "$tmp/tiny.yaml" --out "$tmp/b" --quiet 2> "$tmp/refused.txt"; then
  echo "train_resume: a fresh run overwrote an existing checkpoint"
  exit 1
fi
grep -q -- "--resume" "$tmp/refused.txt"

"$FLASH" train "$tmp/tiny.yaml" --out "$tmp/b" --resume --quiet

strip() { sed 's/, "step_s": [0-9.e+-]*//' "$1"; }
if ! diff <(strip "$tmp/a/metrics.jsonl") <(strip "$tmp/b/metrics.jsonl") > "$tmp/diff.txt"; then
  echo "train_resume: loss curves differ:"
  head -n 20 "$tmp/diff.txt"
  exit 1
fi
lines=$(grep -c '"loss"' "$tmp/a/metrics.jsonl")
[ "$lines" -eq 80 ] || { echo "train_resume: expected 80 logged steps, got $lines"; exit 1; }
grep -q '"test_loss"' "$tmp/a/metrics.jsonl"
cmp "$tmp/a/checkpoint.safetensors" "$tmp/b/checkpoint.safetensors"
echo "train_resume: resumed run identical (80 steps, checkpoint bytes equal)"
