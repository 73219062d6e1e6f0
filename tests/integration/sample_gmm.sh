#!/usr/bin/env bash
# `flash sample` on the exact 2-D Gaussian-mixture teacher: the configs in
# configs/gmm2d/ run as written, reproduce diffusers' reference samples from
# the shared noise bank (tests/data/ref, made by tests/ref/make_sampler_refs.py),
# report NFEs (2 per step with guidance), draw a scatter plot, and refuse bad
# usage with exit 2 and undefined configurations with exit 1.
# Env (set by CTest): FLASH, FLASH_SOURCE_DIR.
: "${FLASH:?}" "${FLASH_SOURCE_DIR:?}"
source "${BASH_SOURCE%/*}/common.bash"
cd "$tmp"
cfg=$FLASH_SOURCE_DIR/configs/gmm2d
ref=$FLASH_SOURCE_DIR/tests/data/ref

# compare OUT.npy REF.npy: max |a - b| / max |b| below 1e-4 (needs numpy; skipped without)
compare() {
  if ! python3 -c 'import numpy' 2>/dev/null; then echo "note: numpy missing, $1 not compared"; return; fi
  python3 - "$1" "$2" <<'PY' || fail "$1 differs from $2"
import sys
import numpy as np
a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
assert a.shape == b.shape and a.dtype == np.float32, (a.shape, b.shape, a.dtype)
rel = np.abs(a - b).max() / np.abs(b).max()
print(f"{sys.argv[1]}: relative difference to diffusers {rel:.2e}")
sys.exit(0 if rel < 1e-4 else 1)
PY
}

"$FLASH" sample "$cfg/ddim.yaml" --noise "$ref/xT.npy" --out ddim.npy --grid ddim.png 2>err || fail "ddim: $(cat err)"
grep -q "64 samples with 'ddim'.*25 NFE per sample" err || fail "ddim summary: $(cat err)"
compare ddim.npy "$ref/ddim_leading.npy"
[[ $(head -c 4 ddim.png | od -An -tx1 | tr -d ' ') == 89504e47 ]] || fail "ddim.png is not a PNG"

"$FLASH" sample "$cfg/dpmpp_2m.yaml" --noise "$ref/xT.npy" --out dpm.npy 2>err || fail "dpmpp_2m: $(cat err)"
compare dpm.npy "$ref/dpmpp_2m_leading.npy"
"$FLASH" sample "$cfg/dpmpp_2m.yaml" --set sampler.timestep_spacing=trailing --set sampler.steps_offset=0 \
  --noise "$ref/xT.npy" --out dpm_tr.npy 2>err || fail "dpmpp_2m trailing: $(cat err)"
compare dpm_tr.npy "$ref/dpmpp_2m_trailing.npy"
"$FLASH" sample "$cfg/ddim.yaml" --set sampler.timestep_spacing=trailing --set sampler.steps_offset=0 \
  --noise "$ref/xT.npy" --out ddim_tr.npy 2>err || fail "ddim trailing: $(cat err)"
compare ddim_tr.npy "$ref/ddim_trailing.npy"

# guidance: one batched call per step, 2 NFEs per step
"$FLASH" sample "$cfg/guided.yaml" --set 'model.stds=[0.3, 0.5, 0.2]' --noise "$ref/xT.npy" \
  --labels "$ref/labels.npy" --out cfg.npy 2>err || fail "guided: $(cat err)"
grep -q "50 NFE per sample (25 model calls)" err || fail "guided summary: $(cat err)"
compare cfg.npy "$ref/dpmpp_2m_trailing_cfg3.npy"

# fresh noise: --n and --seed, reproducible
"$FLASH" sample "$cfg/dpmpp_2m.yaml" --n 5000 --seed 4 --out a.npy 2>/dev/null || fail "fresh noise"
"$FLASH" sample "$cfg/dpmpp_2m.yaml" --n 5000 --seed 4 --out b.npy 2>/dev/null || fail "fresh noise again"
cmp -s a.npy b.npy || fail "same seed, different samples"
(( $(stat -c %s a.npy) == 128 + 5000 * 2 * 4 )) || fail "a.npy has the wrong size"

expect() {
  local want=$1 name=$2 pat=$3
  shift 3
  local rc=0
  "$FLASH" sample "$@" >out 2>err || rc=$?
  ((rc == want)) || fail "$name: exit $rc, want $want: $(cat err)"
  grep -qE -- "$pat" err || fail "$name: stderr lacks /$pat/: $(cat err)"
}
expect 2 "no --out" "missing --out" "$cfg/ddim.yaml"
expect 2 "unknown option" "unknown option '--nosie'" "$cfg/ddim.yaml" --nosie x --out x.npy
expect 2 "labels, unconditional" "unconditional" "$cfg/ddim.yaml" --labels "$ref/labels.npy" --out x.npy
expect 2 "noise shape" "shape \(N, 2\)" "$cfg/ddim.yaml" --noise "$ref/labels.npy" --out x.npy
expect 2 "sampler key" "did you mean 'steps'" "$cfg/ddim.yaml" --set sampler.stesp=3 --out x.npy
expect 2 "bad spacing" "timestep_spacing" "$cfg/ddim.yaml" --set sampler.timestep_spacing=sideways --out x.npy
# zero terminal SNR with an epsilon model from t = 999: undefined, said so
expect 1 "zero SNR" "alpha_t = 0.*v_prediction" "$cfg/ddim.yaml" --set schedule.rescale_betas_zero_snr=true \
  --set sampler.timestep_spacing=trailing --set sampler.steps_offset=0 --out x.npy
echo "sample_gmm: ok"
