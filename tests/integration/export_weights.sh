#!/usr/bin/env bash
# flash export: a checkpoint's EMA weights (or raw ones) alone, the form of
# a reference model. The exported file is a quarter of the training
# checkpoint (no EMA block, no Adam moments), and sampling from it gives
# the same samples, bit for bit, as sampling the training checkpoint with
# the same weights; bad input exits 2 and writes nothing.
# Env (set by CTest): FLASH, FLASH_SOURCE_DIR.
: "${FLASH:?}" "${FLASH_SOURCE_DIR:?}"
source "${BASH_SOURCE%/*}/common.bash"
export OMP_WAIT_POLICY=passive
cd "$tmp" # every file it writes is its own: a second run starts clean
q=$FLASH_SOURCE_DIR/configs/quickstart.yaml
"$FLASH" distill "$q" --set threads=1 --set train.steps=20 --set train.warmup_steps=2 --set train.log_every=10 \
  --out run >/dev/null 2>err || fail "distill: $(tail -3 err)"
"$FLASH" export run/checkpoint.safetensors --out ema.safetensors 2>err || fail "export: $(cat err)"
"$FLASH" export run/checkpoint.safetensors --weights raw --out raw.safetensors 2>err || fail "export raw: $(cat err)"
full=$(stat -c %s run/checkpoint.safetensors) small=$(stat -c %s ema.safetensors)
((small * 3 < full)) || fail "the export ($small bytes) is not a weights-only file (checkpoint $full)"
s=(sample "$q" --set threads=1 --n 256 --seed 7)
"$FLASH" "${s[@]}" --ckpt run/checkpoint.safetensors --out a.npy 2>err || fail "sample: $(cat err)"
"$FLASH" "${s[@]}" --ckpt ema.safetensors --out b.npy 2>err || fail "sample ema: $(cat err)"
"$FLASH" "${s[@]}" --ckpt run/checkpoint.safetensors --weights raw --out c.npy 2>err || fail "sample raw: $(cat err)"
"$FLASH" "${s[@]}" --ckpt raw.safetensors --out d.npy 2>err || fail "sample exported raw: $(cat err)"
cmp -s a.npy b.npy || fail "the exported EMA weights sample differently"
cmp -s c.npy d.npy || fail "the exported raw weights sample differently"
! cmp -s a.npy c.npy || fail "EMA and raw weights gave the same samples: a weak test"
# bad input: exit 2, nothing written
printf 'not a checkpoint' >junk
expect 2 "not a checkpoint" "junk" -- export junk --out bad.safetensors
expect 2 "no such slot" "no .teacher_x. slot" -- export run/checkpoint.safetensors --slot teacher_x --out bad.safetensors
expect 2 "no EMA" "no EMA copy" -- export raw.safetensors --out bad.safetensors
[[ ! -e bad.safetensors ]] || fail "a refused export left bad.safetensors"
echo "export_weights: ok"
