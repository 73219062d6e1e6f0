#!/usr/bin/env bash
# End to end on `--device cuda`, run here on the strict stand-in device
# (tests/fake_device/: the CPU kernels behind memory the host cannot touch,
# so any host access to device memory kills the command with SIGSEGV):
#   - flash run configs/quickstart.yaml, every variant of it at small sizes:
#     the gmm teacher's DPM++ samplers, backward and forward distillation,
#     the reconstruction, srl and adversarial losses (the discriminator in
#     its own device context), the student's EMA, DDIM with and without
#     noise correction, sampling on the noise bank and both metrics. Its
#     results.json and samples agree with the same run on cpu; run again,
#     it reuses every student from its device checkpoint;
#   - forward distillation with srl + adversarial stopped with --until and
#     resumed on the device: bit for bit the uninterrupted run;
#   - the Fashion-MNIST U-Net recipes the other device tests leave out
#     (ADD with a conv discriminator, progressive distillation across its
#     rounds) and the student sampled with euler and lcm: the cpu values.
# Tolerance as in device_pipeline.sh: |a - b| <= 1e-4 + 1e-3 |a|.
# Env (set by CTest): FLASH, FLASH_SOURCE_DIR, FLASH_FAKE_DEVICE.
: "${FLASH:?}" "${FLASH_SOURCE_DIR:?}" "${FLASH_FAKE_DEVICE:?}"
source "${BASH_SOURCE%/*}/common.bash"
cd "$FLASH_SOURCE_DIR"
export OMP_WAIT_POLICY=passive
unset FLASH_CUDA_LIB
fake() { FLASH_CUDA_LIB=$FLASH_FAKE_DEVICE "$@"; }

# The numbers of a JSONL/JSON file in order, without timings.
numbers() {
  sed -E 's/"(step_s|seconds|distill_seconds)": [0-9.e+-]+//g' "$1" | grep -oE '[-]?[0-9][0-9.]*(e[-+]?[0-9]+)?'
}
close_cols() {
  awk -v what="$1" '
    NF != 2 { print what ": unequal lengths"; exit 1 }
    { a = $1 + 0; b = $2 + 0; d = a - b; if (d < 0) d = -d; m = a < 0 ? -a : a
      if (d > 1e-4 + 1e-3 * m) { print what ": line " NR ": " $1 " vs " $2; exit 1 } n++ }
    END { if (!n) { print what ": nothing to compare"; exit 1 } }'
}
same_numbers() { paste <(numbers "$1") <(numbers "$2") | close_cols "$3"; }
npy_floats() { tail -c +129 "$1" | od -A n -v -t f4 -w4; }
same_npy() { paste <(npy_floats "$1") <(npy_floats "$2") | close_cols "$3"; }

# ---- the quickstart, every variant ---------------------------------------------
qs=(--set run.samples=500 --set run.plots=false --set train.steps=12 --set train.batch_size=64
  --set train.warmup_steps=2 --set train.log_every=4 --set train.ckpt_every=6)
for d in cpu cuda; do
  fake "$FLASH" run configs/quickstart.yaml "${qs[@]}" --device $d --out "$tmp/qs_$d" >/dev/null 2>"$tmp/log_$d" ||
    fail "quickstart on $d: $(tail -5 "$tmp/log_$d")"
done
for s in "distilling with backward .*device cuda" "distilling with forward .*device cuda"; do
  grep -q "$s" "$tmp/log_cuda" || fail "quickstart: no '$s' in the log"
done
variants=(teacher_dpmpp_25 teacher_dpmpp_3 imagine_flash_3 no_nc_3 forward_3 srl_3 regression_3 dmd2_1 kd_1)
for v in "${variants[@]}"; do
  grep -q "\"name\": \"$v\"" "$tmp/qs_cuda/results.json" || fail "quickstart: no variant $v"
  same_npy "$tmp/qs_cpu/samples/$v.npy" "$tmp/qs_cuda/samples/$v.npy" "quickstart samples $v" ||
    fail "quickstart samples of $v differ on the device"
done
grep -q '"disc_loss"' "$tmp/qs_cuda/srl_3/metrics.jsonl" || fail "srl_3's discriminator did not train"
grep -q '"ema\.' "$tmp/qs_cuda/imagine_flash_3/checkpoint.safetensors" || fail "no EMA weights in the device checkpoint"
same_numbers "$tmp/qs_cpu/results.json" "$tmp/qs_cuda/results.json" "quickstart results" ||
  fail "quickstart results differ on the device"
# again: the students come back from their checkpoints, to the device
fake "$FLASH" run configs/quickstart.yaml "${qs[@]}" --device cuda --out "$tmp/qs_cuda" >/dev/null 2>"$tmp/log" ||
  fail "quickstart rerun: $(tail -5 "$tmp/log")"
(($(grep -c "nothing left to distill" "$tmp/log") == 6)) || fail "the rerun distilled again: $(cat "$tmp/log")"
same_numbers "$tmp/qs_cpu/results.json" "$tmp/qs_cuda/results.json" "quickstart rerun" ||
  fail "the rerun's results differ"

# ---- stopped and resumed on the device ----------------------------------------
fwd=(--set strategy.plugin=forward --set strategy.plain_target=false
  --set "losses=[{plugin: srl, weight: 1.0, gamma: paper}, {plugin: adversarial, kind: hinge, weight: 0.3,
    lr: 3.0e-4, discriminator: {plugin: mlp_discriminator, dim: 2, hidden: 32, layers: 2}}]"
  --set train.steps=10 --set train.batch_size=32 --set train.warmup_steps=2 --set train.log_every=5
  --set train.ckpt_every=5 --device cuda)
fake "$FLASH" distill configs/quickstart.yaml "${fwd[@]}" --out "$tmp/f_all" 2>"$tmp/log" ||
  fail "forward + srl: $(tail -5 "$tmp/log")"
fake "$FLASH" distill configs/quickstart.yaml "${fwd[@]}" --until 5 --out "$tmp/f_res" 2>"$tmp/log" ||
  fail "forward + srl --until: $(tail -5 "$tmp/log")"
fake "$FLASH" distill configs/quickstart.yaml "${fwd[@]}" --resume --out "$tmp/f_res" 2>"$tmp/log" ||
  fail "forward + srl --resume: $(tail -5 "$tmp/log")"
for f in checkpoint.safetensors loss1.safetensors; do
  cmp -s "$tmp/f_all/$f" "$tmp/f_res/$f" || fail "resumed on the device: $f differs"
done

# ---- Fashion-MNIST U-Nets --------------------------------------------------------
tiny_fmnist_teacher
# four steps: one per round of progressive distillation (64 -> 4 steps)
four=(--set "teacher_checkpoint=$tmp/teacher/checkpoint.safetensors" --set train.steps=4 --set train.batch_size=2
  --set train.warmup_steps=0 --set train.log_every=1 "${small[@]}")
for r in add_4step step_distill_4step; do
  for d in cpu cuda; do
    fake "$FLASH" distill "configs/distill/$r.yaml" "${four[@]}" --device $d --out "$tmp/$r.$d" 2>"$tmp/err" ||
      fail "$r on $d: $(tail -5 "$tmp/err")"
  done
  grep -q "device cuda" "$tmp/err" || fail "$r did not run on the device"
  same_numbers "$tmp/$r.cpu/metrics.jsonl" "$tmp/$r.cuda/metrics.jsonl" "$r metrics" || fail "$r differs on the device"
done
grep -q '"disc_loss"' "$tmp/add_4step.cuda/metrics.jsonl" || fail "ADD's discriminator did not train"
for s in "{plugin: euler, steps: 3}" "{plugin: lcm, steps: 2}"; do
  for d in cpu cuda; do
    fake "$FLASH" sample configs/distill/step_distill_4step.yaml "${small[@]}" \
      --ckpt "$tmp/step_distill_4step.cpu/checkpoint.safetensors" --set "sampler=$s" --n 4 --seed 5 --device $d \
      --out "$tmp/x_$d.npy" >/dev/null 2>"$tmp/err" || fail "sample $s on $d: $(tail -5 "$tmp/err")"
  done
  same_npy "$tmp/x_cpu.npy" "$tmp/x_cuda.npy" "samples with $s" || fail "samples with $s differ on the device"
done
echo PASS
