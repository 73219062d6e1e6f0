#!/usr/bin/env bash
# Files written by flash are read by Python's `safetensors` and numpy, and a
# safetensors file written by Python is read by flash, with every value
# compared (closed forms in tests/tools/io_interop.c). Installs nothing:
# without a python3 that has numpy and safetensors it prints SKIP and passes.
set -euo pipefail

BIN=${FLASH_BINARY_DIR:?FLASH_BINARY_DIR not set}
TOOL="$BIN/tests/tools/io_interop"
[ -x "$TOOL" ] || { echo "FAIL: $TOOL not built"; exit 1; }

PY=""
for cand in python3 /usr/local/bin/python3 /usr/bin/python3; do
    if command -v "$cand" >/dev/null 2>&1 &&
        "$cand" -c 'import numpy, safetensors.numpy' >/dev/null 2>&1; then
        PY=$(command -v "$cand")
        break
    fi
done
if [ -z "$PY" ]; then
    echo "SKIP: no python3 with numpy and safetensors found (tried python3, /usr/local/bin/python3, /usr/bin/python3)"
    exit 0
fi
echo "using $PY ($("$PY" -c 'import sys, numpy, safetensors; print(sys.version.split()[0], "numpy", numpy.__version__, "safetensors", safetensors.__version__)'))"

DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT

"$TOOL" write "$DIR"

"$PY" - "$DIR" <<'PYEOF'
import sys
import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

d = sys.argv[1]
k = np.arange
want = {
    "w": (k(12, dtype=np.float32) * np.float32(0.5) - np.float32(2.25)).reshape(3, 4),
    "ids": k(5, dtype=np.int64) ** 2 * 1000000007 - 7,
    "img": (k(6, dtype=np.uint8) * 40 + 1).reshape(2, 3),
    "d": 1.0 / (k(2, dtype=np.float64) + 3),
    "i": -1000 * k(4, dtype=np.int32),
}
meta = {"format": "flash-test", "note": "h\u00e9llo \"quoted\"\n"}

got = load_file(f"{d}/mixed.safetensors")
assert sorted(got) == sorted(want), sorted(got)
for name, ref in want.items():
    g = got[name]
    assert g.dtype == ref.dtype and g.shape == ref.shape, (name, g.dtype, g.shape)
    assert np.array_equal(g, ref), name
with safe_open(f"{d}/mixed.safetensors", framework="np") as f:
    assert f.metadata() == meta, f.metadata()

a = np.load(f"{d}/f32.npy", allow_pickle=False)
assert a.dtype == np.float32 and np.array_equal(a, want["w"])
b = np.load(f"{d}/i64.npy", allow_pickle=False)
assert b.dtype == np.int64 and np.array_equal(b, want["ids"])

# A checkpoint (closed forms in tests/tools/io_interop.c).
path = f"{d}/ckpt.safetensors"
ck = load_file(path)
bias = np.float32(0.5) - k(3, dtype=np.float32)
g = k(15, dtype=np.float32) * np.float32(0.01) - np.float32(0.05)
b1, b2 = np.float32(0.9), np.float32(0.999)
m = (np.float32(1) - b1) * g
v = (np.float32(1) - b2) * g * g
assert sorted(ck) == sorted(p + n for p in ["", "ema.", "adam_m.", "adam_v."] for n in ["a.weight", "a.bias"]), sorted(ck)
for prefix in ["", "ema."]:
    assert ck[prefix + "a.weight"].dtype == np.float32 and ck[prefix + "a.weight"].shape == (3, 4)
    assert np.array_equal(ck[prefix + "a.weight"], want["w"]), prefix
    assert np.array_equal(ck[prefix + "a.bias"], bias), prefix
for prefix, ref in [("adam_m.", m), ("adam_v.", v)]:
    flat = np.concatenate([ck[prefix + "a.weight"].ravel(), ck[prefix + "a.bias"]])
    assert np.allclose(flat, ref, rtol=1e-6, atol=0), (prefix, flat, ref)
with safe_open(path, framework="np") as f:
    cm = f.metadata()
assert cm["format"] == "flash-checkpoint-1" and cm["step"] == "42", cm
assert cm["config"] == "model: {plugin: mlp}\nsteps: 42\n", cm["config"]
# The checksum: FNV-1a 64 over the data section (everything after the header).
raw = open(path, "rb").read()
n = int.from_bytes(raw[:8], "little")
h = 0xCBF29CE484222325
for byte in raw[8 + n:]:
    h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
assert cm["checksum"] == f"{h:016x}", (cm["checksum"], f"{h:016x}")

save_file(want, f"{d}/from_python.safetensors", metadata=meta)
print("python: flash's safetensors, npy and checkpoint files match")
PYEOF

"$TOOL" check "$DIR/from_python.safetensors"
echo PASS
