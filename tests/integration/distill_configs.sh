#!/usr/bin/env bash
# Every distillation recipe under configs/distill/ (and the quickstart)
# passes `flash check`: it parses, its extends chain resolves, and every
# component slot (teacher, student, sampler, strategy, losses with their
# discriminators, dataset) is created with its keys checked. The ablations
# differ from the 3-step recipe in the one thing they name.
# Env (set by CTest): FLASH, FLASH_SOURCE_DIR.
: "${FLASH:?}" "${FLASH_SOURCE_DIR:?}"
source "${BASH_SOURCE%/*}/common.bash"
cd "$FLASH_SOURCE_DIR"

need_fashion_mnist
# teacher_discriminator (the 1-step recipe) loads the teacher's weights:
# a teacher trained for one step stands in
"$FLASH" train configs/teacher/fmnist_unet_s.yaml --set train.steps=1 --set train.batch_size=2 \
  --set train.warmup_steps=0 --set dataset.limit_train=16 --set dataset.limit_test=4 --set threads=1 \
  --out "$tmp/teacher" >/dev/null 2>"$tmp/err" || fail "teacher: $(tail -3 "$tmp/err")"
export TEACHER=$tmp/teacher/checkpoint.safetensors
check() {
  local extra=()
  [[ $1 == configs/distill/* ]] && extra=(--set "teacher_checkpoint=$TEACHER")
  "$FLASH" check "$1" "${extra[@]}"
}
n=0
for f in configs/quickstart.yaml configs/distill/*.yaml configs/distill/paper/*.yaml; do
  # a base is not run by itself (it names no sampler): the recipes that extend it are checked
  [[ $f == configs/distill/base.yaml ]] && continue
  check "$f" >"$tmp/$(basename "$f").out" 2>"$tmp/err" || fail "$f: $(cat "$tmp/err")"
  n=$((n + 1))
done
((n >= 13)) || fail "only $n configs"

resolved() { check "configs/distill/$1.yaml" 2>/dev/null; }
base=$(resolved imagine_flash_3step)
[[ $base == *"timesteps: [999, 750, 500]"* && $base == *"noise_correction: true"* ]] || fail "3-step recipe: $base"
[[ $(resolved imagine_flash_2step) == *"timesteps: [999, 666]"* ]] || fail "2-step timesteps"
r1=$(resolved imagine_flash_1step)
[[ $r1 == *"timesteps: [999]"* && $r1 == *teacher_discriminator* ]] || fail "1-step recipe: $r1"
# each ablation changes its one thing
{ diff <(echo "$base") <(resolved no_backward) || true; } | grep -q "plugin: forward" || fail "no_backward keeps backward"
{ diff <(echo "$base") <(resolved paper_gamma) || true; } | grep -q "gamma: paper" || fail "paper_gamma"
nd=$(resolved no_discriminator)
[[ $nd != *adversarial* && $nd == *"plugin: srl"* ]] || fail "no_discriminator: $nd"
ns=$(resolved no_srl)
[[ $ns != *"plugin: srl"* && $ns == *adversarial* ]] || fail "no_srl: $ns"
[[ $(resolved no_noise_correction) == *"sampler.noise_correction=false"* ]] || fail "no_noise_correction"
# the paper's Table 3 as the paper defines it: SRL in place of eq. 7, its
# gamma and k, and each ablation removing exactly its part
pf=$(resolved paper/imagine_flash_3)
[[ $pf != *"plugin: reconstruction"* && $pf == *"gamma: paper"* && $pf == *"k: 8"* && $pf == *adversarial* &&
   $pf == *"plain_target: false"* && $pf == *"noise_correction: true"* ]] || fail "paper full recipe: $pf"
pn=$(resolved paper/no_srl)
[[ $pn != *"plugin: srl"* && $pn != *"plugin: reconstruction"* && $pn == *adversarial* ]] || fail "paper no_srl: $pn"
pd=$(resolved paper/no_discriminator)
[[ $pd != *adversarial* && $pd == *"gamma: paper"* && $pd != *"plugin: reconstruction"* ]] || fail "paper no_disc: $pd"
{ diff <(echo "$pf") <(resolved paper/no_backward) || true; } | grep -q "plugin: forward" || fail "paper no_backward"
[[ $pf == *"sampler.noise_correction=false"* ]] || fail "paper: no noise-correction variant"
echo "PASS: $n configs"
