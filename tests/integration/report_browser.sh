#!/usr/bin/env bash
# The HTML report in a real browser, on two reports: a two-run sweep on the
# 2-D quickstart problem (samples, training curves), and a Table 1 rebuilt
# from its results.json (tests/data/report/: FD from 0.9 to 74, the
# longest method names). The plots' SVG is checked first: the axis rule (log when every
# value is positive and they span more than 10x: FD's ticks 1, 10, 100, none
# below 0), the Pareto plot, full legend names, smoothed training curves.
# Then headless Chromium (Debian's `chromium`) lays each report out: no
# text of any plot may fall outside its <svg> (a legend name cut at the
# edge), and a screenshot of each must exist, be large, and show many
# distinct colours (tables, embedded scatter plots, SVG plots), not a
# blank or error page; the PNG is decoded here with zlib alone and kept in
# <build>/tests/report_browser/ to look at. Prints SKIP and passes only
# when no chromium can be found (after the SVG checks).
# Env (set by CTest): FLASH, FLASH_SOURCE_DIR, FLASH_BINARY_DIR.
set -euo pipefail
: "${FLASH:?}" "${FLASH_SOURCE_DIR:?}"
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

# a Table 1 from its results.json alone (tests/data/report/: the table of
# 2026-11, kept as it was, whatever results/table1 now holds)
mkdir -p "$tmp/t1src"
cp "$FLASH_SOURCE_DIR/tests/data/report/table1_2026-11.json" "$tmp/t1src/results.json"
"$FLASH" report "$tmp/t1src" --out "$tmp/t1" >/dev/null 2>"$tmp/log" ||
  fail "flash report table1_2026-11: $(cat "$tmp/log")"
cmp -s "$FLASH_SOURCE_DIR/tests/data/report/table1_2026-11.csv" "$tmp/t1/results.csv" ||
  fail "results.csv rebuilt from results.json differs: $(diff "$FLASH_SOURCE_DIR/tests/data/report/table1_2026-11.csv" "$tmp/t1/results.csv" | head -5)"

python3 - "$html" "$tmp/t1/report.html" "$tmp/t1/results.json" "$tmp/t1/table.md" <<'PY' || fail "the plots' SVG"
import json, re, sys
sweep, t1 = open(sys.argv[1]).read(), open(sys.argv[2]).read()
def plots(h):
    out = {}
    for svg in re.findall(r"<svg.*?</svg>", h, re.S):
        head = re.match(r"<svg[^>]*>", svg).group(0)
        pid = re.search(r'id="([^"]*)"', head).group(1)
        out[pid] = {
            "x": re.search(r'data-x-scale="(\w+)"', head).group(1),
            "y": re.search(r'data-y-scale="(\w+)"', head).group(1),
            "xt": re.findall(r'class="xtick"[^>]*>([^<]*)<', svg),
            "yt": re.findall(r'class="ytick"[^>]*>([^<]*)<', svg),
            "legend": re.findall(r'class="legend"[^>]*>([^<]*)<', svg),
            "svg": svg,
        }
    return out
P = plots(t1)
fd = [p for p in P if p.startswith("plot-fd-")] + ["plot-pareto"]
assert "plot-pareto" in P and len(fd) == 3, sorted(P)
for p in fd:
    v = P[p]
    assert v["y"] == "log", (p, v["y"])
    ticks = [float(t) for t in v["yt"]]
    assert min(ticks) >= 0, (p, "an FD tick below 0", v["yt"])
    assert {"1", "10", "100"} <= set(v["yt"]), (p, "no decades on the FD axis", v["yt"])
    print(f"{p}: y {v['y']} {v['yt']}, x {v['x']} {v['xt']}")
# recall spans 0.033 to 0.78 (24x): log; precision 0.66 to 0.90: linear, 1-2-5 steps
assert P["plot-recall-steps"]["y"] == "log" and P["plot-precision-steps"]["y"] == "linear"
pt = [float(t) for t in P["plot-precision-steps"]["yt"]]
step = round(pt[1] - pt[0], 9)
assert all(abs(b - a - step) < 1e-9 for a, b in zip(pt, pt[1:])), pt
assert f"{step:.0e}"[0] in "125", ("not a 1-2-5 step", pt)
# the NFE axis: 1 to 50, log
assert P["plot-pareto"]["x"] == "log" and P["plot-pareto"]["xt"][0] == "1", P["plot-pareto"]["xt"]
# every method, the longest too, whole in the legend of every metric plot
j = json.load(open(sys.argv[3]))
methods = sorted({e["method"] for e in j["table"]}, key=len)
longest = methods[-1]
assert longest == "imagine_flash_3_uniform_no_disc", longest
for p in P:
    assert longest in P[p]["legend"], (p, P[p]["legend"])
# the Pareto front: named rows, ringed
front = re.findall(r'font-size="10"[^>]*>([^<]*)<', P["plot-pareto"]["svg"])
assert front == ["imagine_flash_1", "imagine_flash_2", "lcm_3", "teacher_dpmpp_25"], front
assert "Pareto front" in P["plot-pareto"]["legend"]
# one seed a row: no marks, and the table says why
md = open(sys.argv[4]).read()
assert "1 seed: no spread" in md and "†" not in md.split("\n\n")[0], md
assert all(m["vs_baseline"] in ("no spread", None) for e in j["table"] for m in e["metrics"].values())
assert "1 seed: no spread" in t1
# the sweep's report: its training curves smoothed with the raw ones behind, a Pareto plot
S = plots(sweep)
assert "plot-pareto" in S and "plot-training" in S, sorted(S)
tr = S["plot-training"]["svg"]
assert tr.count('stroke-opacity="0.35"') >= 1 and "exponential moving average" in sweep
assert S["plot-training"]["x"] == "linear"
print("SVG checks passed")
PY

browser=$(command -v chromium || command -v chromium-browser || true)
if [[ -z $browser ]]; then
  echo "SKIP: chromium not found (tools/setup.sh installs it)"
  exit 0
fi
keep=${FLASH_BINARY_DIR:-$tmp}/tests/report_browser
mkdir -p "$keep"

# Every text of every plot inside its <svg>, as laid out: a script added to
# a copy of the page lists those outside, and --dump-dom prints the result.
probe() {
  python3 - "$1" "$2" <<'PY'
import sys
js = """<script>
window.addEventListener('load', () => {
  const out = [];
  let n = 0;
  for (const svg of document.querySelectorAll('svg')) {
    const s = svg.getBoundingClientRect();
    for (const t of svg.querySelectorAll('text')) {
      const b = t.getBoundingClientRect();
      n++;
      if (b.left < s.left - 0.5 || b.top < s.top - 0.5 || b.right > s.right + 0.5 || b.bottom > s.bottom + 0.5)
        out.push(svg.id + ': ' + t.textContent);
    }
  }
  const p = document.createElement('pre');
  p.id = 'probe';
  p.textContent = 'PROBE ' + n + ' texts, ' + out.length + ' outside their plot\\n' + out.join('\\n');
  document.body.appendChild(p);
});
</script>"""
open(sys.argv[2], "w").write(open(sys.argv[1]).read().replace("</body>", js + "</body>"))
PY
  timeout 120 "$browser" --headless --no-sandbox --disable-gpu --user-data-dir="$tmp/profile" --dump-dom \
    "file://$2" >"$tmp/dom.html" 2>"$tmp/browser.log" || fail "chromium --dump-dom: $(tail -5 "$tmp/browser.log")"
  line=$(grep -o "PROBE [0-9]* texts, [0-9]* outside their plot" "$tmp/dom.html") || fail "the probe did not run"
  echo "$1: $line"
  [[ $line == *" 0 outside their plot" ]] || fail "text cut at a plot's edge: $(sed -n '/PROBE/,/<\/pre>/p' "$tmp/dom.html")"
}
probe "$html" "$tmp/probe_sweep.html"
probe "$tmp/t1/report.html" "$tmp/probe_t1.html"

# shot HTML PNG: a screenshot of the page, checked
shot() {
  timeout 120 "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$tmp/profile" \
    --screenshot="$2" --window-size=1280,2400 "file://$1" >"$tmp/browser.log" 2>&1 ||
    fail "chromium: $(tail -5 "$tmp/browser.log")"
  [[ -f $2 ]] || fail "no screenshot: $(tail -5 "$tmp/browser.log")"
  local size
  size=$(stat -c %s "$2")
  ((size > 50000)) || fail "screenshot $2 is only $size bytes"
  python3 - "$2" <<'PY' || fail "the screenshot $2 looks blank"
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
print(f"{sys.argv[1]}: {w}x{h}, {len(colours)} distinct colours, {nonwhite} sampled pixels not white")
assert len(colours) >= 200, f"only {len(colours)} distinct colours"
assert nonwhite >= 0.05 * (w // 2) * (h // 4), "almost all white"
PY
}
shot "$html" "$keep/sweep.png"
shot "$tmp/t1/report.html" "$keep/table1.png"
echo PASS
