#!/usr/bin/env bash
# train.lr_scale: Adam's rate per parameter group, named by prefix. On the
# 2-D guidance-conditioned LCM student (configs/gmm2d/lcm_guided.yaml):
# a scale of 1 trains the same student bit for bit as none; a scale of 0
# leaves the zero-initialised guidance matrix at zero while the rest
# trains; a scale of 10 moves it about 10 times as far; a prefix that names
# no parameter is refused with the file, line and key (exit 2).
# Env (set by CTest): FLASH, FLASH_SOURCE_DIR.
: "${FLASH:?}" "${FLASH_SOURCE_DIR:?}"
source "$(dirname "$0")/common.bash"
export OMP_WAIT_POLICY=passive
q=$FLASH_SOURCE_DIR/configs/gmm2d/lcm_guided.yaml
d=(--set threads=1 --set train.steps=20 --set train.warmup_steps=2 --set train.ckpt_every=20)
run() { # NAME [--set ...]
  local name=$1; shift
  "$FLASH" distill "$q" "${d[@]}" "$@" --out "$tmp/$name" >/dev/null 2>"$tmp/err" || fail "$name: $(tail -3 "$tmp/err")"
  "$FLASH" export "$tmp/$name/checkpoint.safetensors" --weights raw --out "$tmp/$name.safetensors" 2>/dev/null ||
    fail "$name: export"
}
run base
run one --set 'train.lr_scale={guidance.: 1}'
run zero --set 'train.lr_scale={guidance.: 0}'
run ten --set 'train.lr_scale={guidance.: 10}'
python3 - "$tmp" <<'PY' || fail "lr_scale did not scale the guidance matrix's steps"
import json, struct, sys
def tensors(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    out = {}
    for k, v in h.items():
        if k == "__metadata__": continue
        s, e = v["data_offsets"]
        raw = b[8 + n + s:8 + n + e]
        out[k] = struct.unpack("<%df" % (len(raw) // 4), raw)
    return out
t = {k: tensors("%s/%s.safetensors" % (sys.argv[1], k)) for k in ("base", "one", "zero", "ten")}
assert t["one"] == t["base"], "a scale of 1 changed the trained weights"
g = [k for k in t["base"] if k.startswith("guidance.")]
assert g, list(t["base"])
amax = lambda v: max(abs(x) for x in v)
assert all(amax(t["zero"][k]) == 0.0 for k in g), "a scale of 0 moved the guidance matrix"
b, ten = max(amax(t["base"][k]) for k in g), max(amax(t["ten"][k]) for k in g)
assert b > 0 and 5 < ten / b < 12, (b, ten)
print("guidance matrix max |w| after 20 steps: %.3g at scale 1, %.3g at 10, 0 at 0" % (b, ten))
PY
set +e
"$FLASH" distill "$q" "${d[@]}" --set 'train.lr_scale={nope.: 3}' --out "$tmp/bad" >/dev/null 2>"$tmp/err"
rc=$?
set -e
((rc == 2)) || fail "an unknown prefix: exit $rc"
grep -q "lr_scale.nope" "$tmp/err" || fail "the error does not name the key: $(cat "$tmp/err")"
[[ ! -e $tmp/bad/checkpoint.safetensors ]] || fail "a refused run left a checkpoint"
echo "ok: lr_scale scales one group's Adam steps, 1 changes nothing, and a bad prefix is refused"
