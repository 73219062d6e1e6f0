#!/usr/bin/env bash
# Random streams per purpose: x_T, labels, timesteps, real batches and
# rollout noise each come from a stream of their own, and so do the
# discriminator's real batch and instance noise and SRL's fresh noise. So a
# distillation with the discriminator or SRL at weight 0 trains the same
# student, bit for bit, as one without it, forward and backward runs draw
# the same timesteps (the only difference between two ablations is what
# they change), and the discriminator itself resumes bit for bit.
# Env (set by CTest): FLASH, FLASH_SOURCE_DIR.
: "${FLASH:?}" "${FLASH_SOURCE_DIR:?}"
source "$(dirname "$0")/common.bash"
export OMP_WAIT_POLICY=passive
q=$FLASH_SOURCE_DIR/configs/quickstart.yaml
d=(--set threads=1 --set train.steps=40 --set train.warmup_steps=5 --set train.log_every=5 --set train.ckpt_every=20)
adv='{plugin: adversarial, kind: hinge, weight: WEIGHT, lr: 3.0e-4, noise: 0.05,
  discriminator: {plugin: mlp_discriminator, dim: 2, hidden: 64, layers: 2}}'
"$FLASH" distill "$q" "${d[@]}" --set "losses=[{plugin: reconstruction, weight: 1.0}, ${adv/WEIGHT/0.0}]" \
  --out "$tmp/w0" >/dev/null 2>"$tmp/err" || fail "weight 0: $(tail -3 "$tmp/err")"
"$FLASH" distill "$q" "${d[@]}" --set "losses=[{plugin: reconstruction, weight: 1.0}]" \
  --out "$tmp/none" >/dev/null 2>"$tmp/err" || fail "without: $(tail -3 "$tmp/err")"
grep -q '"disc_loss"' "$tmp/w0/metrics.jsonl" || fail "the discriminator at weight 0 did not train"
# the tensors of a checkpoint: its bytes after the header (the metadata
# holds the config, which differs)
python3 - "$tmp/w0" "$tmp/none" <<'PY' || fail "the discriminator at weight 0 changed the student"
import json, struct, sys
def tensors(run):
    b = open(run + "/checkpoint.safetensors", "rb").read()
    return b[8 + struct.unpack("<Q", b[:8])[0]:]
def losses(run):
    return [json.loads(l)["loss"] for l in open(run + "/metrics.jsonl") if '"loss"' in l]
a, b = sys.argv[1:3]
assert tensors(a) == tensors(b), "student tensors differ"
assert losses(a) == losses(b) and len(losses(a)) >= 8, (losses(a), losses(b))
PY
# SRL at weight 0 beside the reconstruction loss: the same student as without
"$FLASH" distill "$q" "${d[@]}" --set "losses=[{plugin: reconstruction, weight: 1.0}, {plugin: srl, weight: 0.0}]" \
  --out "$tmp/srl0" >/dev/null 2>"$tmp/err" || fail "srl weight 0: $(tail -3 "$tmp/err")"
grep -q '"loss_srl"' "$tmp/srl0/metrics.jsonl" || fail "SRL at weight 0 was not computed"
# forward inputs instead of backward ones: the same timesteps, step by step
"$FLASH" distill "$q" "${d[@]}" --set "losses=[{plugin: reconstruction, weight: 1.0}]" --set strategy.plugin=forward \
  --set train.log_every=1 --out "$tmp/fw" >/dev/null 2>"$tmp/err" || fail "forward: $(tail -3 "$tmp/err")"
"$FLASH" distill "$q" "${d[@]}" --set "losses=[{plugin: reconstruction, weight: 1.0}]" \
  --set train.log_every=1 --out "$tmp/bw" >/dev/null 2>"$tmp/err" || fail "backward: $(tail -3 "$tmp/err")"
python3 - "$tmp/srl0" "$tmp/none" "$tmp/fw" "$tmp/bw" <<'PY' || fail "SRL at weight 0, or forward inputs, changed another draw"
import json, struct, sys
def tensors(run):
    b = open(run + "/checkpoint.safetensors", "rb").read()
    return b[8 + struct.unpack("<Q", b[:8])[0]:]
def col(run, key):
    return [json.loads(l)[key] for l in open(run + "/metrics.jsonl") if '"%s"' % key in l]
srl0, none, fw, bw = sys.argv[1:5]
assert tensors(srl0) == tensors(none), "SRL at weight 0 changed the student"
assert col(srl0, "loss") == col(none, "loss")
tf, tb = col(fw, "t"), col(bw, "t")
assert len(tf) == 40 and tf == tb, (tf, tb)
assert len(set(tb)) == 3, "the timesteps are not drawn per iteration: %s" % tb
PY
# the discriminator (weight 0.3) resumes bit for bit: straight vs stopped at
# step 20 and resumed
for run in straight split; do
  extra=()
  [[ $run == split ]] && extra=(--until 20)
  "$FLASH" distill "$q" "${d[@]}" --set "losses=[{plugin: reconstruction, weight: 1.0}, ${adv/WEIGHT/0.3}]" \
    --out "$tmp/$run" "${extra[@]}" >/dev/null 2>"$tmp/err" || fail "$run: $(tail -3 "$tmp/err")"
done
"$FLASH" distill "$q" "${d[@]}" --set "losses=[{plugin: reconstruction, weight: 1.0}, ${adv/WEIGHT/0.3}]" \
  --out "$tmp/split" --resume >/dev/null 2>"$tmp/err" || fail "resume: $(tail -3 "$tmp/err")"
for f in checkpoint.safetensors loss1.safetensors; do
  cmp -s "$tmp/straight/$f" "$tmp/split/$f" || fail "$f differs after a resume"
done
echo "ok: the discriminator's and SRL's draws are their own (weight 0 equals none, bit for bit); forward and backward draw the same timesteps; the discriminator resumes bit for bit"
