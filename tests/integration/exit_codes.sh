#!/usr/bin/env bash
# Every exit code `flash --help` documents: 0 success; 2 bad input of any
# kind (options, a config, an input file missing, unreadable, malformed or
# truncated); 1 a runtime failure (here: a write that fails).
# Env (set by CTest): FLASH, FLASH_SOURCE_DIR.
: "${FLASH:?}" "${FLASH_SOURCE_DIR:?}"
source "${BASH_SOURCE%/*}/common.bash"
cd "$tmp"
"$FLASH" --help >help.txt
grep -q '2 bad input of any kind' help.txt || fail "flash --help does not document exit 2: $(cat help.txt)"
grep -q '1 runtime failure' help.txt || fail "flash --help does not document exit 1"

cp "$FLASH_SOURCE_DIR/configs/gmm2d/ddim.yaml" gmm.yaml
# 0: success
expect 0 "sample" -- sample gmm.yaml --n 8 --out x.npy
# 2: options
expect 2 "unknown option" "unknown option" -- sample gmm.yaml --nn 8 --out x.npy
expect 2 "missing value" "needs a value" -- sample gmm.yaml --n
# 2: a config (a misspelt key) and a missing config
printf 'extends: gmm.yaml\nsampler: {stesp: 3}\n' >bad.yaml
expect 2 "bad config" "bad\.yaml:2:[0-9]+" "did you mean 'steps'" -- sample bad.yaml --out y.npy
expect 2 "missing config" "nope\.yaml" -- sample nope.yaml --out y.npy
# 2: input files: missing, malformed, truncated (NPY noise, NPY samples, a checkpoint)
expect 2 "missing noise" "no_such\.npy" -- sample gmm.yaml --noise no_such.npy --out y.npy
printf 'not an npy file at all' >garbage.npy
expect 2 "malformed noise" "garbage\.npy" -- sample gmm.yaml --noise garbage.npy --out y.npy
head -c 100 x.npy >short.npy
expect 2 "truncated noise" "short\.npy" -- sample gmm.yaml --noise short.npy --out y.npy
printf 'metrics: [{plugin: gmm_nll, weights: [1], means: [[0, 0]], stds: [1]}]\n' >metrics.yaml
expect 0 "eval" -- eval metrics.yaml --samples x.npy
expect 2 "eval truncated samples" "short\.npy" -- eval metrics.yaml --samples short.npy
expect 2 "eval missing samples" "no_such\.npy" -- eval metrics.yaml --samples no_such.npy
printf 'extends: gmm.yaml\nmodel: !replace {plugin: mlp, dim: 2, hidden: 8, layers: 2, time_dim: 8}\n' >mlp.yaml
printf 'not a checkpoint' >bad.safetensors
expect 2 "malformed checkpoint" "bad\.safetensors" -- sample mlp.yaml --ckpt bad.safetensors --out y.npy
expect 2 "missing checkpoint" "none\.safetensors" -- sample mlp.yaml --ckpt none.safetensors --out y.npy
# timesteps the schedule cannot hold, and a plugin of another ABI, are bad input too
expect 2 "timesteps past the schedule" "lays out no valid timesteps" -- sample gmm.yaml --n 8 --out y.npy \
  --set sampler.steps=1000 --set sampler.timestep_spacing=leading
cat >old_abi.c <<'C'
#include <flash/flash.h>
static const flash_component *const none[] = {NULL};
static const flash_plugin_desc desc = {FLASH_ABI_MAJOR + 1, 0, "future", "0", none, 0};
FLASH_PLUGIN(desc)
C
if ${CC:-cc} -shared -fPIC old_abi.c -I"$FLASH_SOURCE_DIR/include" -o old_abi.so 2>/dev/null; then
  FLASH_PLUGIN_PATH=$PWD/old_abi.so expect 2 "a plugin of another ABI" "old_abi\.so" "ABI" -- plugins
fi
# 1: a runtime failure: the output cannot be written (its folder is a file)
touch afile
expect 1 "failed write" "afile" -- sample gmm.yaml --n 8 --out afile/x.npy
echo "ok: exit codes 0, 1 and 2 as documented"
