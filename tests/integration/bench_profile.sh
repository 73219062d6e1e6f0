#!/usr/bin/env bash
# flash bench's roofline and profiles: the operations it counts for unet-s
# (0.2555 GFLOP per sample forward, 3x that per training sample: the
# convolutions and linear layers counted from their shapes), a kernel
# table under --profile, and --distill's split of a distillation iteration
# into the networks' phases.
# Env (set by CTest): FLASH, FLASH_SOURCE_DIR.
: "${FLASH:?}" "${FLASH_SOURCE_DIR:?}"
source "$(dirname "$0")/common.bash"
export OMP_WAIT_POLICY=passive
"$FLASH" bench --threads 1 --batch 4 --repeats 1 --warmup 1 --profile >"$tmp/out" 2>"$tmp/err" ||
  fail "bench --profile: $(tail -3 "$tmp/err")"
python3 - "$tmp/out" <<'PY' || fail "roofline: $(cat "$tmp/out")"
import json, sys
b = json.loads(open(sys.argv[1]).readline())
assert abs(b["gflop_forward_per_sample"] - 0.2555) < 0.0005, b
# a training sample: forward, then the input and weight gradients of every
# layer but the first's input gradient (x needs none): just under 3x
per = b["gflop_train_step"] / b["batch"] / b["gflop_forward_per_sample"]
assert 2.9 < per <= 3.0, per
assert 0 < b["train_peak_fraction"] < 2 and b["sgemm_gflops"] > 0, b
PY
for k in conv2d_forward conv2d_backward group_norm_forward "outside the kernels"; do
  grep -q "$k" "$tmp/err" || fail "--profile lacks $k: $(cat "$tmp/err")"
done
"$FLASH" bench --distill "$FLASH_SOURCE_DIR/configs/quickstart.yaml" --threads 1 --repeats 3 --warmup 2 \
  >"$tmp/d" 2>"$tmp/err" || fail "bench --distill: $(tail -3 "$tmp/err")"
python3 - "$tmp/d" <<'PY' || fail "distill phases: $(cat "$tmp/d")"
import json, sys
b = json.loads(open(sys.argv[1]).readline())
assert b["strategy"] == "backward" and b["iterations"] == 3, b
for p in ("teacher", "student", "backward", "discriminator", "optimizer"):
    assert b["phases_ms"].get(p, 0) > 0, p
assert abs(sum(b["phases_ms"].values()) - 1e3 * b["iteration_s"]) < 0.01 * 1e3 * b["iteration_s"] + 0.01
PY
[[ -z $(ls -d /tmp/flash_bench_distill_* 2>/dev/null) ]] || fail "bench --distill left its folder behind"
echo "ok: roofline, kernel profile, distillation phases"
