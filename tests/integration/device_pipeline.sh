#!/usr/bin/env bash
# The whole pipeline on `--device cuda`, run here on the stand-in device
# (tests/fake_device/: the CPU kernels under the name "cuda", loaded through
# FLASH_CUDA_LIB), against the same commands on cpu:
#   - flash distill of the 2-D quickstart (gmm teacher, mlp student,
#     reconstruction + adversarial loss with its own discriminator context):
#     the logged metrics and the checkpoints (student and discriminator)
#     agree with the cpu run, and a run stopped with --until and resumed on
#     the device is bit for bit the uninterrupted one (checkpoints visit the
#     host and go back);
#   - flash sample of that student: the same samples;
#   - flash run with a teacher trained first (teacher_train), a teacher
#     variant and a distilled variant: the same results.json metrics, and the
#     teacher trained on the device;
#   - flash eval on the device: the same metrics;
#   - --device cuda without a loadable device library: a clear error, exit 1
#     or 2, for distill, sample, run and eval.
# Tolerance: the device code paths of the core differ from the CPU's in
# summation order (a bias gradient is a GEMM with ones there, a double loop
# on the CPU), so values agree to rounding, not bit for bit:
# |a - b| <= 1e-4 + 1e-3 |a| per value (observed: 4e-8 on the student,
# 1.2e-4 on the discriminator after 10 iterations).
# Env (set by CTest): FLASH, FLASH_SOURCE_DIR, FLASH_FAKE_DEVICE.
: "${FLASH:?}" "${FLASH_SOURCE_DIR:?}" "${FLASH_FAKE_DEVICE:?}"
source "${BASH_SOURCE%/*}/common.bash"
export OMP_WAIT_POLICY=passive
unset FLASH_CUDA_LIB
fake() { FLASH_CUDA_LIB=$FLASH_FAKE_DEVICE "$@"; }
cfg=$FLASH_SOURCE_DIR/configs/quickstart.yaml

# The float32 payload of a safetensors file (after its 8-byte length and
# JSON header, which holds the config and so names the device), one value
# a line.
st_floats() {
  local n
  n=$(od -A n -t u8 -N 8 "$1" | tr -d ' ')
  tail -c +$((9 + n)) "$1" | od -A n -v -t f4 -w4
}
# Two columns of numbers agree within the tolerance; prints the worst pair.
close_cols() {
  awk -v what="$1" '
    NF != 2 { print what ": unequal lengths"; exit 1 }
    { a = $1 + 0; b = $2 + 0; d = a - b; if (d < 0) d = -d; m = a < 0 ? -a : a
      if (d > 1e-4 + 1e-3 * m) { bad++; if (!w) w = NR ": " $1 " vs " $2 } if (d > md) md = d; n++ }
    END { if (!n) { print what ": nothing to compare"; exit 1 }
          if (bad) { print what ": " bad " of " n " values differ, first at " w; exit 1 }
          print what ": " n " values, largest difference " md + 0 }'
}
same_ckpt() { paste <(st_floats "$1") <(st_floats "$2") | close_cols "$3"; }
# The numbers of a JSONL/JSON file in order, without timings.
numbers() {
  sed -E 's/"(step_s|seconds|distill_seconds)": [0-9.e+-]+//g' "$1" | grep -oE '[-]?[0-9][0-9.]*(e[-+]?[0-9]+)?'
}
same_numbers() { paste <(numbers "$1") <(numbers "$2") | close_cols "$3"; }

# ---- flash distill --------------------------------------------------------
small=(--set train.steps=10 --set train.batch_size=64 --set train.warmup_steps=2 --set train.log_every=2
  --set train.ckpt_every=5)
"$FLASH" distill "$cfg" "${small[@]}" --out "$tmp/d_cpu" 2>"$tmp/log" || fail "distill cpu: $(tail -3 "$tmp/log")"
fake "$FLASH" distill "$cfg" "${small[@]}" --device cuda --out "$tmp/d_dev" 2>"$tmp/log" ||
  fail "distill cuda: $(tail -3 "$tmp/log")"
grep -q "device cuda" "$tmp/log" || fail "flash distill --device cuda did not run on the device: $(cat "$tmp/log")"
grep -q '"disc_loss"' "$tmp/d_dev/metrics.jsonl" || fail "the discriminator did not train on the device"
same_numbers "$tmp/d_cpu/metrics.jsonl" "$tmp/d_dev/metrics.jsonl" "distill metrics" || fail "distill metrics differ"
same_ckpt "$tmp/d_cpu/checkpoint.safetensors" "$tmp/d_dev/checkpoint.safetensors" "student checkpoint" ||
  fail "student checkpoints differ"
same_ckpt "$tmp/d_cpu/loss1.safetensors" "$tmp/d_dev/loss1.safetensors" "discriminator checkpoint" ||
  fail "discriminator checkpoints differ"
# the YAML key does what --device does
fake "$FLASH" distill "$cfg" "${small[@]}" --set device=cuda --set train.steps=3 --out "$tmp/d_key" \
  2>"$tmp/log" || fail "device=cuda: $(tail -3 "$tmp/log")"
grep -q "device cuda" "$tmp/log" || fail "device: cuda did not run on the device"

# stopped and resumed on the device: bit for bit
fake "$FLASH" distill "$cfg" "${small[@]}" --device cuda --until 5 --out "$tmp/d_res" 2>"$tmp/log" ||
  fail "distill --until: $(tail -3 "$tmp/log")"
fake "$FLASH" distill "$cfg" "${small[@]}" --device cuda --resume --out "$tmp/d_res" 2>"$tmp/log" ||
  fail "distill --resume: $(tail -3 "$tmp/log")"
for f in checkpoint.safetensors loss1.safetensors; do
  cmp -s "$tmp/d_dev/$f" "$tmp/d_res/$f" || fail "resumed on the device: $f differs"
done

# ---- flash sample -----------------------------------------------------------
for d in cpu cuda; do
  fake "$FLASH" sample "$cfg" --ckpt "$tmp/d_cpu/checkpoint.safetensors" --n 500 --device $d \
    --out "$tmp/x_$d.npy" 2>"$tmp/log" || fail "sample $d: $(tail -3 "$tmp/log")"
done
paste <(tail -c +129 "$tmp/x_cpu.npy" | od -A n -v -t f4 -w4) <(tail -c +129 "$tmp/x_cuda.npy" | od -A n -v -t f4 -w4) |
  close_cols "samples" || fail "flash sample --device cuda differs"

# ---- flash eval ---------------------------------------------------------------
for d in cpu cuda; do
  fake "$FLASH" eval "$cfg" --samples "$tmp/x_cpu.npy" --device $d --out "$tmp/eval_$d.json" >/dev/null \
    2>"$tmp/log" || fail "eval $d: $(tail -3 "$tmp/log")"
done
same_numbers "$tmp/eval_cpu.json" "$tmp/eval_cuda.json" "eval metrics" || fail "flash eval --device cuda differs"

# ---- flash run: teacher training, distillation, sampling, metrics --------------
run=(--set "teacher={plugin: mlp, dim: 2, hidden: 32, layers: 2, time_dim: 16}"
  --set "teacher_train={strategy: {plugin: denoise}, train: {steps: 40, batch_size: 64, lr: 2.0e-3, ema_decay: 0.9,
    log_every: 20, ckpt_every: 40}}"
  --set "student={plugin: mlp, dim: 2, hidden: 32, layers: 2, time_dim: 16}"
  --set "losses=[{plugin: reconstruction}, {plugin: adversarial, kind: hinge, weight: 0.3, lr: 3.0e-4,
    discriminator: {plugin: mlp_discriminator, dim: 2, hidden: 32, layers: 2}}]"
  --set train.steps=6 --set train.batch_size=32 --set train.warmup_steps=2 --set train.log_every=3
  --set run.samples=400 --set run.plots=false
  --set 'run.variants=[{name: teacher_3, model: teacher, set: ["sampler={plugin: dpmpp_2m, steps: 3}"]},
    {name: student_3}]')
for d in cpu cuda; do
  fake "$FLASH" run "$cfg" "${run[@]}" --set "teacher_checkpoint=$tmp/r_$d/teacher/checkpoint.safetensors" \
    --device $d --out "$tmp/r_$d" >/dev/null 2>"$tmp/log_$d" || fail "run $d: $(tail -3 "$tmp/log_$d")"
done
grep -q "training the teacher" "$tmp/log_cuda" || fail "flash run did not train its teacher"
grep -q "training with denoise .*device cuda" "$tmp/log_cuda" || fail "the teacher did not train on the device"
grep -q "distilling with backward .*steps of 32, .*device cuda" "$tmp/log_cuda" || fail "the student was not distilled on the device"
same_ckpt "$tmp/r_cpu/teacher/checkpoint.safetensors" "$tmp/r_cuda/teacher/checkpoint.safetensors" \
  "run teacher checkpoint" || fail "the teachers differ"
same_numbers "$tmp/r_cpu/results.json" "$tmp/r_cuda/results.json" "run results" || fail "results.json differs"
for v in teacher_3 student_3; do
  paste <(tail -c +129 "$tmp/r_cpu/samples/$v.npy" | od -A n -v -t f4 -w4) \
    <(tail -c +129 "$tmp/r_cuda/samples/$v.npy" | od -A n -v -t f4 -w4) | close_cols "run samples $v" ||
    fail "flash run samples of $v differ"
done

# ---- no device library ---------------------------------------------------------
nolib() {
  local what=$1 rc=0
  shift
  FLASH_CUDA_LIB=$tmp/no/libflash_cuda.so "$FLASH" "$@" >/dev/null 2>"$tmp/err" || rc=$?
  ((rc == 1 || rc == 2)) || fail "$what --device cuda without a library: exit $rc, $(cat "$tmp/err")"
  grep -q "device 'cuda': cannot load FLASH_CUDA_LIB=" "$tmp/err" || fail "$what: unclear error: $(cat "$tmp/err")"
}
nolib distill distill "$cfg" "${small[@]}" --device cuda --out "$tmp/n_distill"
[[ ! -e $tmp/n_distill/checkpoint.safetensors ]] || fail "a failed distill wrote a checkpoint"
nolib sample sample "$cfg" --ckpt "$tmp/d_cpu/checkpoint.safetensors" --device cuda --out "$tmp/n.npy"
nolib run run "$cfg" "${run[@]}" --set "teacher_checkpoint=$tmp/n_run/teacher/checkpoint.safetensors" --device cuda \
  --out "$tmp/n_run"
[[ ! -e $tmp/n_run/teacher ]] || fail "a failed run trained a teacher"
nolib eval eval "$cfg" --samples "$tmp/x_cpu.npy" --device cuda
echo PASS
