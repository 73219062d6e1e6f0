#!/usr/bin/env bash
# Run folders are self-contained: every command that trains or samples
# writes the resolved config (config.yaml; x0.config.yaml beside flash
# sample's x0.npy) with its paths absolute and the content hash of each
# plugin file its components come from; the written config reruns from any
# directory to the same bytes; a rebuilt plugin stops flash run from
# reusing a student it did not distill.
# Env (set by CTest): FLASH, FLASH_SOURCE_DIR.
: "${FLASH:?}" "${FLASH_SOURCE_DIR:?}"
source "${BASH_SOURCE%/*}/common.bash"
cd "$tmp"
qs=$FLASH_SOURCE_DIR/configs/quickstart.yaml
short=(--set train.steps=6 --set train.warmup_steps=1)

# flash distill CONFIG --out R, then R/config.yaml from another directory: the same checkpoint bytes
"$FLASH" distill "$qs" --out R "${short[@]}" 2>err || fail "distill: $(cat err)"
grep -q '^# plugin [0-9a-f]\{16\} /.*flash_strategies\.so$' R/config.yaml || fail "R/config.yaml: $(head -5 R/config.yaml)"
mkdir elsewhere
(cd elsewhere && "$FLASH" distill ../R/config.yaml --out ../R2 2>err) || fail "rerun: $(cat elsewhere/err)"
cmp R/checkpoint.safetensors R2/checkpoint.safetensors || fail "R/config.yaml rerun elsewhere differs"

# relative paths are the config file's, written absolute: an npy dataset beside a config
mkdir -p sub/data
python3 - sub/data/x.npy <<'PY'
import random, struct, sys
random.seed(1)
v = [random.gauss(0, 1) for _ in range(128)]
hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (64, 2), }"
hdr += ' ' * ((64 - (10 + len(hdr) + 1) % 64) % 64) + '\n'
open(sys.argv[1], 'wb').write(b'\x93NUMPY\x01\x00' + struct.pack('<H', len(hdr)) + hdr.encode() + struct.pack('<128f', *v))
PY
write_mlp_training sub/train.yaml data/x.npy 4
"$FLASH" train sub/train.yaml --out T --quiet 2>err || fail "train: $(cat err)"
grep -q "path: $tmp/sub/data/x.npy" T/config.yaml || grep -q "path: .*/sub/data/x.npy" T/config.yaml ||
  fail "dataset path not absolute: $(grep path: T/config.yaml)"
(cd elsewhere && "$FLASH" train ../T/config.yaml --out ../T2 --quiet 2>err) || fail "train rerun: $(cat elsewhere/err)"
cmp T/checkpoint.safetensors T2/checkpoint.safetensors || fail "T/config.yaml rerun elsewhere differs"

# flash run: the run folder and each student's folder hold the record; results.json names the plugins
mkdir plug
cp "$(dirname "$FLASH")"/../lib/flash/plugins/*.so plug/
run=(run "$qs" --out W --set run.samples=64 "${short[@]}"
     --set 'run.variants=[{name: teacher_3, model: teacher, set: ["sampler.steps=3"]}, {name: student_3}]')
FLASH_PLUGIN_DIR=$tmp/plug "$FLASH" "${run[@]}" >out 2>err || fail "run: $(cat err)"
for f in W/config.yaml W/student_3/config.yaml; do
  grep -q "^# plugin [0-9a-f]\{16\} $tmp/plug/flash_models\.so$" "$f" || fail "$f: $(head -5 "$f")"
done
grep -q '"plugins": \[{"path": "'"$tmp"'/plug/flash_datasets.so", "fnv1a64": "[0-9a-f]\{16\}"}' W/results.json ||
  fail "results.json: $(head -5 W/results.json)"
# every variant in: the record says the run is complete (a run stopped part
# way leaves what it measured, marked "complete": false)
grep -q '"complete": true' W/results.json || fail "results.json does not say the run is complete"
# the same build reuses the student; a rebuilt plugin (other bytes) does not
FLASH_PLUGIN_DIR=$tmp/plug "$FLASH" "${run[@]}" >out 2>err || fail "rerun: $(cat err)"
grep -q 'reused' out || fail "student not reused: $(cat out)"
printf '\0' >>plug/flash_models.so
FLASH_PLUGIN_DIR=$tmp/plug expect 2 "rebuilt plugin" \
  "variant 'student_3': the student in W/student_3 was distilled by another build of plugin $tmp/plug/flash_models\.so" \
  -- "${run[@]}"
# a run its components refuse (exit 2) leaves the folder as it found it: a
# new folder is removed again, a resumed folder keeps its record
q=$FLASH_SOURCE_DIR/configs/quickstart.yaml
expect 2 "refused new run" "strategy 'backward': timestep_draw" \
  -- distill "$q" --set strategy.step=1 --set strategy.timestep_draw=sample --out refused_new
[[ ! -e refused_new ]] || fail "a refused run left refused_new behind: $(ls -la refused_new)"
mkdir refused_resume && printf 'seed: 0\n' >refused_resume/config.yaml
expect 2 "refused resume" "strategy 'backward': timestep_draw" \
  -- distill "$q" --set strategy.step=1 --set strategy.timestep_draw=sample --out refused_resume --resume
[[ $(cat refused_resume/config.yaml) == 'seed: 0' ]] || fail "a refused resume replaced refused_resume/config.yaml"
echo "run_folder_record: ok"
