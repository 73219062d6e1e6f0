#!/usr/bin/env bash
# Every distillation recipe under configs/distill/ (and the quickstart)
# passes `flash check`: it parses, its extends chain resolves, and every
# component slot (teacher, student, sampler, strategy, losses with their
# discriminators, dataset) is created with its keys checked. The ablations
# differ from the 3-step recipe in the one thing they name.
# Env (set by CTest): FLASH, FLASH_SOURCE_DIR.
set -euo pipefail
: "${FLASH:?}" "${FLASH_SOURCE_DIR:?}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
cd "$FLASH_SOURCE_DIR"

if [[ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]]; then
  echo "SKIP: Fashion-MNIST is not installed (tools/setup.sh installs it)"
  exit 0
fi
n=0
for f in configs/quickstart.yaml configs/distill/*.yaml; do
  "$FLASH" check "$f" >"$tmp/$(basename "$f").out" 2>"$tmp/err" || fail "$f: $(cat "$tmp/err")"
  n=$((n + 1))
done
((n >= 13)) || fail "only $n configs"

resolved() { "$FLASH" check "configs/distill/$1.yaml" 2>/dev/null; }
base=$(resolved imagine_flash_3step)
[[ $base == *"timesteps: [999, 750, 500]"* && $base == *"noise_correction: true"* ]] || fail "3-step recipe: $base"
[[ $(resolved imagine_flash_2step) == *"timesteps: [999, 666]"* ]] || fail "2-step timesteps"
[[ $(resolved imagine_flash_1step) == *"timesteps: [999]"* ]] || fail "1-step timesteps"
# each ablation changes its one thing
{ diff <(echo "$base") <(resolved no_backward) || true; } | grep -q "plugin: forward" || fail "no_backward keeps backward"
{ diff <(echo "$base") <(resolved paper_gamma) || true; } | grep -q "gamma: paper" || fail "paper_gamma"
nd=$(resolved no_discriminator)
[[ $nd != *adversarial* && $nd == *"plugin: srl"* ]] || fail "no_discriminator: $nd"
ns=$(resolved no_srl)
[[ $ns != *"plugin: srl"* && $ns == *adversarial* ]] || fail "no_srl: $ns"
[[ $(resolved no_noise_correction) == *"sampler.noise_correction=false"* ]] || fail "no_noise_correction"
echo "PASS: $n configs"
