#!/usr/bin/env bash
# Inputs and outputs that cannot lie: NaN or infinity in a noise bank, a
# sample set or an npy dataset is refused with exit 2 naming the file and
# the first bad index; samples that come out non-finite stop flash sample
# (exit 1) unless --no-check-finite; a model with parameters is not
# sampled without --ckpt unless --random-init says so on purpose.
# Env (set by CTest): FLASH, FLASH_SOURCE_DIR.
: "${FLASH:?}" "${FLASH_SOURCE_DIR:?}"
source "${BASH_SOURCE%/*}/common.bash"
cd "$tmp"
qs=$FLASH_SOURCE_DIR/configs/quickstart.yaml

# npy ROWS COLS VALUE PATH: float32 (ROWS, COLS) of normal values, value 7 (sample 3 of 2-D
# points) replaced by VALUE unless it is 0
npy() {
  python3 - "$@" <<'PY'
import random, struct, sys
rows, cols, bad, path = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
random.seed(0)
v = [random.gauss(0, 1) for _ in range(rows * cols)]
if bad != 0: v[7] = bad  # NaN compares unequal to 0 too
hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % (rows, cols)
hdr += ' ' * ((64 - (10 + len(hdr) + 1) % 64) % 64) + '\n'
with open(path, 'wb') as f:
    f.write(b'\x93NUMPY\x01\x00' + struct.pack('<H', len(hdr)) + hdr.encode() + struct.pack('<%df' % len(v), *v))
PY
}
npy 16 2 0 good.npy
npy 16 2 nan nan.npy
npy 16 2 -inf inf.npy
gmm=(--set 'model={plugin: gmm, weights: [1], means: [[0, 0]], stds: [1]}')

# noise banks (flash sample) and sample sets (flash eval)
expect 2 "sample NaN noise" 'nan\.npy: noise sample 3 holds NaN \(value 1 of it\)' -- sample "$qs" "${gmm[@]}" --noise nan.npy --out s.npy
expect 2 "sample inf noise" 'inf\.npy: noise sample 3 holds -inf' -- sample "$qs" "${gmm[@]}" --noise inf.npy --out s.npy
[[ ! -e s.npy ]] || fail "a refused sample run wrote s.npy"
expect 2 "eval NaN samples" 'nan\.npy: sample 3 holds NaN' -- eval "$qs" --samples nan.npy
expect 0 "eval good samples" -- eval "$qs" --samples good.npy --out m.json
grep -q '^# plugin [0-9a-f]\{16\} /.*flash_metrics\.so$' m.config.yaml || fail "eval wrote no config record: $(ls)"

# a trainable model needs its weights
expect 2 "sample without --ckpt" "model 'mlp' has parameters and no weights were given.*--ckpt.*--random-init" \
  -- sample "$qs" --noise good.npy --out s.npy
[[ ! -e s.npy ]] || fail "a refused sample run wrote s.npy"
expect 0 "sample --random-init" -- sample "$qs" --noise good.npy --out s.npy --random-init
grep -q '^seed: ' s.config.yaml || fail "sample wrote no config next to --out"
expect 0 "analytic teacher needs no --ckpt" -- sample "$qs" "${gmm[@]}" --noise good.npy --out g.npy

# outputs: a model whose weights are 1e30 diverges; --check-finite (the default) refuses its samples
expect 0 "distill" -- distill "$qs" --out R --set train.steps=2 --set train.warmup_steps=1
python3 - R/checkpoint.safetensors <<'PY'
import json, struct, sys
# every weight of the student (not its EMA or Adam moments) scaled to 1e30, checksum kept valid
p = sys.argv[1]
b = bytearray(open(p, 'rb').read())
n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n])
meta = h.pop('__metadata__')
base = 8 + n
for k, t in h.items():
    if k.startswith(('ema.', 'adam_')) or not k.endswith('weight'): continue
    s, e = t['data_offsets']
    for o in range(base + s, base + e, 4):
        b[o:o + 4] = struct.pack('<f', 1e30 if struct.unpack('<f', b[o:o + 4])[0] >= 0 else -1e30)
hsh = 0xcbf29ce484222325
for x in bytes(b[base:]):
    hsh = ((hsh ^ x) * 0x100000001b3) & 0xffffffffffffffff
meta['checksum'] = '%016x' % hsh
h['__metadata__'] = meta
hdr = json.dumps(h).encode()
open('big.safetensors', 'wb').write(struct.pack('<Q', len(hdr)) + hdr + bytes(b[base:]))
PY
expect 1 "non-finite samples" 'sample [0-9]+ came out non-finite.*--no-check-finite' \
  -- sample "$qs" --ckpt big.safetensors --weights raw --noise good.npy --out big.npy
[[ ! -e big.npy ]] || fail "non-finite samples were written"
expect 0 "--no-check-finite" -- sample "$qs" --ckpt big.safetensors --weights raw --noise good.npy --out big.npy --no-check-finite

# an npy dataset with NaN is refused when it loads
mkdir -p data
npy 64 2 nan data/x.npy
write_mlp_training nan_data.yaml data/x.npy 2
expect 2 "NaN dataset" 'data/x\.npy: example 3 holds NaN' -- train nan_data.yaml --out T --quiet
echo "inputs_finite: ok"
