#!/usr/bin/env bash
# The HTML report in a real browser: a two-run sweep on the 2-D quickstart
# problem, `flash report`, then headless Chromium (Debian's `chromium`)
# renders report.html to a PNG. The screenshot must exist, be large, and
# show many distinct colours (tables, embedded scatter plots, SVG plots),
# not a blank or error page. The PNG is decoded here with zlib alone.
# Prints SKIP and passes only when no chromium can be found.
# Env (set by CTest): FLASH, FLASH_SOURCE_DIR.
set -euo pipefail
: "${FLASH:?}" "${FLASH_SOURCE_DIR:?}"
browser=$(command -v chromium || command -v chromium-browser || true)
if [[ -z $browser ]]; then
  echo "SKIP: chromium not found (tools/setup.sh installs it)"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

cat >"$tmp/sweep.yaml" <<YAML
base: $FLASH_SOURCE_DIR/configs/quickstart.yaml
set: [run.samples=1000, train.steps=100, train.warmup_steps=10, train.log_every=10]
steps: [1, 3]
timesteps: {1: [999], 3: [999, 750, 500]}
variants:
  - {name: teacher_dpmpp, model: teacher, share_steps: true, steps: [25, 1, 3],
     per_step: ["sampler={plugin: dpmpp_2m, steps: {steps}, timestep_spacing: trailing}"]}
  - {name: imagine_flash, share_steps: true, steps: [3, 1], per_step: ["sampler.timesteps={timesteps}"],
     resample: [{name: no_nc, set: ["sampler.noise_correction=false"]}]}
YAML
"$FLASH" sweep "$tmp/sweep.yaml" --out "$tmp/s" --jobs 2 >/dev/null 2>"$tmp/log" || fail "flash sweep: $(tail -3 "$tmp/log")"
"$FLASH" report "$tmp/s" --out "$tmp/r" >/dev/null 2>"$tmp/log" || fail "flash report: $(cat "$tmp/log")"
html=$tmp/r/report.html
grep -q "data:image/png;base64," "$html" || fail "no embedded sample pictures"
(($(grep -c "<svg" "$html") >= 3)) || fail "fewer than 3 SVG plots"
grep -q "Noise correction on / off" "$html" || fail "no noise-correction comparison"
grep -Eq 'src="(http|file|/)' "$html" && fail "report.html refers to outside files"

timeout 120 "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$tmp/profile" \
  --screenshot="$tmp/shot.png" --window-size=1280,2400 "file://$html" >"$tmp/browser.log" 2>&1 ||
  fail "chromium: $(tail -5 "$tmp/browser.log")"
[[ -f $tmp/shot.png ]] || fail "no screenshot: $(tail -5 "$tmp/browser.log")"
size=$(stat -c %s "$tmp/shot.png")
((size > 50000)) || fail "screenshot is only $size bytes"
python3 - "$tmp/shot.png" <<'PY' || fail "the screenshot looks blank"
import struct, sys, zlib
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
pos, idat = 8, b""
while pos < len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    if kind == b"IHDR":
        w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
    elif kind == b"IDAT":
        idat += body
    pos += 12 + n
assert depth == 8 and ctype in (2, 6), (depth, ctype)
bpp = 3 if ctype == 2 else 4
raw, stride = zlib.decompress(idat), w * bpp
prev, colours, nonwhite = bytearray(stride), set(), 0
for y in range(h):
    f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
    for i in range(stride):  # PNG filters (RFC 2083 section 6)
        a = line[i - bpp] if i >= bpp else 0
        b, c = prev[i], prev[i - bpp] if i >= bpp else 0
        if f == 1: line[i] = (line[i] + a) & 255
        elif f == 2: line[i] = (line[i] + b) & 255
        elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    if y % 4 == 0:
        for x in range(0, w, 2):
            px = bytes(line[x * bpp:x * bpp + 3])
            colours.add(px)
            nonwhite += px != b"\xff\xff\xff"
    prev = line
print(f"screenshot {w}x{h}: {len(colours)} distinct colours, {nonwhite} sampled pixels not white")
assert len(colours) >= 200, f"only {len(colours)} distinct colours"
assert nonwhite >= 0.05 * (w // 2) * (h // 4), "almost all white"
PY
echo PASS
